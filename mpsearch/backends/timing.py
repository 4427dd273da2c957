"""The timing protocol every GPU measurement uses (CUTLASS and PyTorch backends; tuning, per-op,
end-to-end, ``bench``, ``enumerate``): a named regime, a steady state before sampling, an adaptive
sample count, interleaving when candidates are compared, and telemetry beside the samples.

Why a protocol and not "warm up 3, repeat 10": a GPU under load sits at its power cap, where the
SM clock falls by a quarter within a tenth of a second and then keeps moving with the workload.
Ten samples taken right after other work land in the boost state, the capped state, or both.

Regimes:

- ``sustained`` (default; what a serving GPU sees): run the configuration back to back until the
  GPU is in a steady state (the medians of two consecutive windows of iterations agree within
  ``steady_tol``, and so do their SM clocks where telemetry is there), for at least
  ``warmup_min_s`` and at most ``warmup_cap_s``; then sample. A GPU coming from idle holds its
  boost clock for about a tenth of a second before its power cap pulls the clock down, and then
  lowers it step by step for about a second while its averaged power climbs to the limit; both
  plateaus look steady over a short window. So, where telemetry is read: while the power cap holds
  the clocks, the averaged power must have reached ``power_fraction`` of the limit; while it does
  not, the steady state must have lasted ``uncapped_hold_s`` (a light workload that never reaches
  the cap is steady after that). Under the cap the controller keeps moving the clock, so sampling
  lasts at least ``min_sample_s`` to average over it. After a sustained measurement the GPU is
  left running the same work for about as long as the host usually takes before the next one
  (at most ``keep_warm_s``), so the next warm-up starts at the cap instead of climbing back to it.
- ``burst`` (short requests on an idle GPU): let the GPU idle for ``cool_s``, then sample back to
  back for at most ``burst_window_s`` (the time the GPU takes to reach its cap), but at least
  ``min_samples``.

Sampling stops when the 95% confidence interval of the median is within ``±target_ci`` of it (an
order-statistics interval, in the spirit of nvbench's convergence criterion) and ``min_sample_s``
has passed, or at ``max_samples``, or after ``sample_cap_s``; which one ended it is recorded.
Every sample is kept. Interleaved comparisons stop when every candidate still sampled has
converged, when those left tie with the best (within ``target_ci``), or after ``compare_cap_s``.

One sample: the L2 is flushed (a 256 MiB write), the launches run between two CUDA events, and a
spin kernel before them holds the GPU for longer than the host needs to enqueue them, so the
events time the GPU, not Python's launch overhead. Samples are queued in batches of about
``batch_ms`` of GPU time and synchronised per batch; telemetry (SM and memory clock, power,
temperature, clocks-event reasons) is read after each batch. Nothing here changes GPU settings.

The protocol logic is pure Python over two small interfaces (:class:`GpuTimer` and
:class:`~mpsearch.backends.telemetry.Telemetry`), so it is tested on CPU with fakes; the CUDA
implementation of the timer is :class:`mpsearch.backends.gpu.timer.CudaEventTimer`.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from mpsearch.backends.telemetry import POWER_CAP_BIT, Telemetry
from mpsearch.errors import InvalidSpecError

SUSTAINED, BURST = "sustained", "burst"
REGIMES = (SUSTAINED, BURST)

CONVERGED, TIME_CAP, SAMPLE_CAP, BURST_WINDOW = "converged", "time cap", "sample cap", "burst window"
ELIMINATED, TIED = "eliminated", "tied with the best"


@dataclass(frozen=True)
class TimingProtocol:
    """How one latency is measured. Defaults were chosen from the spread-vs-time trade-off measured
    on an H200 (benchmarks/results/); see the module docstring for what each part does."""

    regime: str = SUSTAINED
    target_ci: float = 0.005
    min_samples: int = 10
    max_samples: int = 400
    sample_cap_s: float = 1.0
    min_sample_s: float = 0.1
    warmup_min_s: float = 0.05
    warmup_cap_s: float = 3.0
    uncapped_hold_s: float = 0.15
    power_fraction: float = 0.95
    compare_cap_s: float = 4.0
    steady_window_s: float = 0.04
    steady_tol: float = 0.005
    clock_tol: float = 0.01
    cool_s: float = 1.0
    burst_window_s: float = 0.08
    batch_ms: float = 5.0
    keep_warm_s: float = 0.5

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise InvalidSpecError(f"timing regime must be one of {', '.join(REGIMES)}, got {self.regime!r}")
        for name in ("target_ci", "sample_cap_s", "warmup_cap_s", "steady_window_s", "steady_tol", "clock_tol",
                     "burst_window_s", "batch_ms", "power_fraction", "compare_cap_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidSpecError(f"timing protocol: {name} must be a number > 0, got {value!r}")
        for name in ("min_sample_s", "warmup_min_s", "uncapped_hold_s", "cool_s", "keep_warm_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InvalidSpecError(f"timing protocol: {name} must be a number >= 0, got {value!r}")
        if not 2 <= self.min_samples <= self.max_samples:
            raise InvalidSpecError(
                f"timing protocol: 2 <= min_samples <= max_samples must hold, got ({self.min_samples}, {self.max_samples})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- statistics -----------------------------------------------------------------------------------

_Z95 = 1.959964


def median_ci(samples: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics whose ranks
    bound the binomial(n, 1/2) count (normal approximation), clipped to the sample."""
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    half = _Z95 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return xs[lo], xs[hi]


def relative_ci_halfwidth(samples: list[float]) -> float:
    """Half the width of :func:`median_ci`, relative to the median (inf for fewer than 2 samples)."""
    if len(samples) < 2:
        return math.inf
    lo, hi = median_ci(samples)
    return (hi - lo) / 2 / statistics.median(samples)


@dataclass
class _Iteration:
    t: float  # seconds since the measurement began, when the batch holding it was read
    ms: float
    sm_mhz: int | None
    power_capped: bool | None = None  # None: no telemetry


def is_steady(history: list[_Iteration], window_s: float, tol: float, clock_tol: float) -> bool:
    """True when the last two windows of ``window_s`` seconds each hold >= 3 iterations, their median
    latencies agree within ``tol`` (and the newest three iterations with the last window within
    2 ``tol``), and their median SM clocks (where read) within ``clock_tol``."""
    if not history:
        return False
    now = history[-1].t
    last = [it for it in history if it.t > now - window_s]
    prev = [it for it in history if now - 2 * window_s < it.t <= now - window_s]
    if len(last) < 3 or len(prev) < 3:
        return False
    a, b = statistics.median(it.ms for it in prev), statistics.median(it.ms for it in last)
    if abs(b - a) > tol * b:
        return False
    # A change that began within the last window barely moves its median: the newest iterations
    # must agree with it too.
    newest = statistics.median(it.ms for it in last[-3:])
    if abs(newest - b) > 2 * tol * b:
        return False
    clocks_a = [it.sm_mhz for it in prev if it.sm_mhz]
    clocks_b = [it.sm_mhz for it in last if it.sm_mhz]
    if clocks_a and clocks_b:
        ca, cb = statistics.median(clocks_a), statistics.median(clocks_b)
        if abs(cb - ca) > clock_tol * cb:
            return False
    return True


# --- what the protocol needs from a GPU -----------------------------------------------------------

class GpuTimer(Protocol):
    def run_batch(self, launch: Callable[[], None], n: int, what: str) -> list[float]:
        """``n`` samples of ``launch`` (ms each: L2 flushed, CUDA events around it), synchronised once."""

    def idle(self, seconds: float) -> None:
        """Wait for queued work, then leave the GPU idle for ``seconds``."""

    def hold(self, launch: Callable[[], None], seconds: float) -> None:
        """Queue up to ``seconds`` of ``launch`` without waiting for it, so the GPU stays under the
        same load while the host does other work between measurements (optional for a timer)."""

    def run_alternating(self, launches: Sequence[Callable[[], None]], rounds: int, what: str) -> list[list[float]]:
        """``rounds`` rounds, each one sample of every launch in order (ms, as ``run_batch`` takes
        them), synchronised once; one list per round (optional for a timer: only
        :func:`measure_against_reference` needs it)."""


@dataclass
class Measurement:
    """The samples of one measured thing and how they were obtained."""

    samples: list[float]
    regime: str
    stop: str
    warmup: dict[str, Any]
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    telemetry_absent: str = ""
    seconds: float = 0.0
    eliminated: bool = False  # an interleaved candidate dropped as clearly slower than the best

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples)

    @property
    def converged(self) -> bool:
        return self.stop == CONVERGED

    @property
    def ci_ms(self) -> tuple[float, float]:
        return median_ci(self.samples)

    def summary(self) -> dict[str, Any]:
        """JSON-able record (samples excluded: they are stored beside it)."""
        from mpsearch.backends.telemetry import summarize

        lo, hi = self.ci_ms
        out: dict[str, Any] = {
            "regime": self.regime, "n_samples": len(self.samples), "median_ms": round(self.median_ms, 6),
            "ci95_ms": [round(lo, 6), round(hi, 6)], "ci95_rel_halfwidth": round(relative_ci_halfwidth(self.samples), 6),
            "stop": self.stop, "warmup": self.warmup, "seconds": round(self.seconds, 4),
        }
        if self.telemetry:
            out["telemetry"] = summarize(self.telemetry)
            out["telemetry_rows"] = self.telemetry
        else:
            out["telemetry"] = {"absent": self.telemetry_absent or "not read"}
        if self.eliminated:
            out["eliminated"] = True
        return out


def _batch_size(sample_ms: float, batch_ms: float, limit: int = 64) -> int:
    return max(1, min(limit, round(batch_ms / max(sample_ms, 1e-6))))


def _read(telemetry: Telemetry | None, after: int, t: float) -> dict[str, Any] | None:
    reading = telemetry.read() if telemetry is not None else None
    if reading is None:
        return None
    return {"after_sample": after, "t_s": round(t, 4), **reading.as_row()}


def _absent(telemetry: Telemetry | None) -> str:
    if telemetry is None:
        return "no telemetry source"
    return "" if telemetry.available else telemetry.why_absent


def measure(launch: Callable[[], None], protocol: TimingProtocol, timer: GpuTimer, telemetry: Telemetry | None = None,
            *, what: str = "a measurement", now: Callable[[], float] = time.monotonic) -> Measurement:
    """Samples of ``launch`` under ``protocol`` (see the module docstring)."""
    t0 = now()
    probe = timer.run_batch(launch, 1, what)[0]
    batch = _batch_size(probe, protocol.batch_ms)
    warmup = _warm_up({"": launch}, {"": batch}, protocol, timer, telemetry, what, now, t0)
    samples, rows, stop = _sample_until_stopped(lambda room: timer.run_batch(launch, min(batch, room), what),
                                                protocol, telemetry, now, t0)
    seconds = now() - t0
    _keep_warm(timer, launch, protocol)
    return Measurement(samples, protocol.regime, stop, warmup, rows, _absent(telemetry), seconds)


def _sample_until_stopped(take: Callable[[int], list[float]], protocol: TimingProtocol, telemetry: Telemetry | None,
                          now: Callable[[], float], t0: float) -> tuple[list[float], list[dict[str, Any]], str]:
    """Call ``take(room)`` (up to ``room`` more values) until the stopping rule ends it, reading
    telemetry after each call; returns the values, the telemetry rows and why it stopped."""
    values: list[float] = []
    rows: list[dict[str, Any]] = []
    start = now()
    stop = ""
    while not stop:
        values += take(protocol.max_samples - len(values))
        t = now()
        row = _read(telemetry, len(values), t - t0)
        if row:
            rows.append(row)
        stop = _stop_reason(values, protocol, t - start)
    return values, rows, stop


def _keep_warm(timer: GpuTimer, launch: Callable[[], None], protocol: TimingProtocol) -> None:
    """Sustained: leave the GPU loaded after a measurement. Between two measurements the host stores
    results and chooses the next configuration; an idle GPU's averaged power sags meanwhile and the
    next warm-up has to wait for it to climb back to the cap."""
    hold = getattr(timer, "hold", None)
    if protocol.regime == SUSTAINED and protocol.keep_warm_s > 0 and hold is not None:
        hold(launch, protocol.keep_warm_s)


def _stop_reason(samples: list[float], protocol: TimingProtocol, elapsed: float) -> str:
    n = len(samples)
    if (n >= protocol.min_samples and relative_ci_halfwidth(samples) <= protocol.target_ci
            and (elapsed >= protocol.min_sample_s or protocol.regime == BURST)):
        return CONVERGED
    if n >= protocol.max_samples:
        return SAMPLE_CAP
    if n >= protocol.min_samples and protocol.regime == BURST and elapsed >= protocol.burst_window_s:
        return BURST_WINDOW
    if n >= protocol.min_samples and elapsed >= protocol.sample_cap_s:
        return TIME_CAP
    return ""


def _warm_up(launches: Mapping[str, Callable[[], None]], batches: Mapping[str, int], protocol: TimingProtocol,
             timer: GpuTimer, telemetry: Telemetry | None, what: str, now: Callable[[], float], t0: float,
             scale: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Bring the GPU to the regime's starting state; returns what it took (for the record).

    With several launches (interleaved candidates), they are visited round-robin and each visit's
    median is divided by that launch's ``scale`` (its first probe), so one series of comparable
    iterations tracks the GPU's state however different the candidates' speeds."""
    if protocol.regime == BURST:
        timer.idle(protocol.cool_s)
        return {"regime": BURST, "idle_s": protocol.cool_s}
    history: list[_Iteration] = []
    powers: list[tuple[float, float]] = []
    limit = (telemetry.limits().get("power_limit_w") if telemetry is not None and telemetry.available else None)
    start = now()
    steady = False
    names = list(launches)
    visit = 0
    while True:
        name = names[visit % len(names)]
        visit += 1
        value = statistics.median(timer.run_batch(launches[name], batches[name], what))
        if scale:
            value /= scale[name]
        t = now()
        reading = telemetry.read() if telemetry is not None else None
        history.append(_Iteration(t - t0, value, reading.sm_mhz if reading else None,
                                  bool(reading.throttle & POWER_CAP_BIT) if reading else None))
        if reading is not None:
            powers.append((t - t0, reading.power_w))
        elapsed = t - start
        if elapsed >= protocol.warmup_min_s and _settled(history, powers, limit, elapsed, protocol) and is_steady(
                history, protocol.steady_window_s, protocol.steady_tol, protocol.clock_tol):
            steady = True
            break
        if elapsed >= protocol.warmup_cap_s:
            break
    out = {"regime": SUSTAINED, "iterations": len(history), "seconds": round(now() - start, 4), "steady": steady}
    if powers:
        out["power_w"] = round(powers[-1][1], 1)
    return out


def _settled(history: list[_Iteration], powers: list[tuple[float, float]], limit: float | None, elapsed: float,
             protocol: TimingProtocol) -> bool:
    """Has the power controller finished adjusting? (Always yes without telemetry.)"""
    capped = history[-1].power_capped
    if capped is None:
        return True
    if not capped:
        return elapsed >= protocol.uncapped_hold_s
    if limit:
        now = powers[-1][0]
        recent = [w for t, w in powers if t > now - protocol.steady_window_s] or [powers[-1][1]]
        return statistics.median(recent) >= protocol.power_fraction * limit
    return True


def measure_interleaved(launches: Mapping[str, Callable[[], None]], protocol: TimingProtocol, timer: GpuTimer,
                        telemetry: Telemetry | None = None, *, race_margin: float | None = None,
                        what: str = "candidates", now: Callable[[], float] = time.monotonic) -> dict[str, Measurement]:
    """Samples of several launches taken round-robin (the order rotates each round), so drift in
    clocks or temperature hits all of them alike.

    Without ``race_margin`` (a comparison), sampling goes on until every launch has converged, or
    ``compare_cap_s``. With it (a search for the fastest), once every candidate still sampled has
    ``min_samples``, those whose median exceeds the best by more than ``race_margin`` are dropped
    (their samples kept, marked ``eliminated``), and sampling stops as soon as the candidates left
    have converged or all tie with the best within ``target_ci``."""
    names = list(launches)
    if not names:
        return {}
    t0 = now()
    probes = {name: timer.run_batch(launches[name], 1, f"{what}: {name}")[0] for name in names}
    # Short visits keep the interleaving fine-grained: about 1 ms of GPU time per candidate per round.
    batches = {name: _batch_size(probes[name], 1.0, limit=16) for name in names}
    warmup = _warm_up(launches, batches, protocol, timer, telemetry, what, now, t0, scale=probes)
    samples: dict[str, list[float]] = {name: [] for name in names}
    active = list(names)
    stops: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    start = now()
    rounds = 0
    stop = ""
    while not stop:
        k = rounds % len(active)
        for name in active[k:] + active[:k]:
            samples[name] += timer.run_batch(launches[name], batches[name], f"{what}: {name}")
        rounds += 1
        t = now()
        row = _read(telemetry, rounds, t - t0)
        if row:
            rows.append({"round": rounds, **row})
        elapsed = t - start
        if not all(len(samples[n]) >= protocol.min_samples for n in active):
            continue
        medians = {n: statistics.median(samples[n]) for n in active}
        best = min(medians.values())
        if race_margin is not None:
            for name in list(active):
                if medians[name] > best * (1 + race_margin):
                    active.remove(name)
                    stops[name] = ELIMINATED
        done = all(relative_ci_halfwidth(samples[n]) <= protocol.target_ci for n in active)
        tied = race_margin is not None and all(medians[n] <= best * (1 + protocol.target_ci) for n in active)
        if (done or tied) and elapsed >= protocol.min_sample_s:
            stop = CONVERGED if done else TIED
        elif elapsed >= protocol.compare_cap_s:
            stop = TIME_CAP
        elif any(len(samples[n]) >= protocol.max_samples for n in active):
            stop = SAMPLE_CAP
    for name in active:
        stops[name] = stop
    seconds = now() - t0
    _keep_warm(timer, launches[min(active, key=lambda n: statistics.median(samples[n]))], protocol)
    return {name: Measurement(samples[name], protocol.regime, stops[name], warmup, rows, _absent(telemetry), seconds,
                              eliminated=stops[name] == ELIMINATED)
            for name in names}


@dataclass
class PairedMeasurement:
    """A latency measured against a reference: samples of both taken alternately, a few
    milliseconds apart, and each round's ratio target / reference.

    Why: under its power cap a GPU's SM clock settles at a different level in each process and keeps
    moving within one, by several percent (the spread no sample count removes). Two launches timed
    milliseconds apart run at the same clock, so their ratio repeats where either latency alone does
    not. A recording measured this way stores every sample of both and the ratios; its latencies
    are ratio x one constant (the reference's median over the whole recording)."""

    target: Measurement
    reference: Measurement
    ratios: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def stop(self) -> str:
        return self.target.stop

    def summary(self) -> dict[str, Any]:
        """JSON-able record of the pair (samples excluded: they are stored beside it)."""
        lo, hi = median_ci(self.ratios)
        return {"ratio": round(self.ratio, 6), "ratio_ci95": [round(lo, 6), round(hi, 6)],
                "ratio_ci95_rel_halfwidth": round(relative_ci_halfwidth(self.ratios), 6), "rounds": len(self.ratios),
                "target": self.target.summary(), "reference": self.reference.summary()}


def measure_against_reference(launch: Callable[[], None], reference: Callable[[], None], protocol: TimingProtocol,
                              timer: GpuTimer, telemetry: Telemetry | None = None, *, what: str = "a measurement",
                              now: Callable[[], float] = time.monotonic) -> PairedMeasurement:
    """``launch`` and ``reference`` timed alternately (reference first in one batch, target first
    in the next, so a drift within a batch biases neither), after the protocol's warm-up over both.
    The stopping rule of :func:`measure` applies to the per-round ratios: they stop when the
    ratio's median is pinned to ``target_ci`` (after ``min_sample_s``), or at a recorded cap."""
    t0 = now()
    probes = {"target": timer.run_batch(launch, 1, what)[0], "reference": timer.run_batch(reference, 1, what)[0]}
    launches = {"target": launch, "reference": reference}
    batches = {name: _batch_size(probes[name], 1.0, limit=16) for name in launches}
    warmup = _warm_up(launches, batches, protocol, timer, telemetry, what, now, t0, scale=probes)
    rounds = _batch_size(probes["target"] + probes["reference"], protocol.batch_ms)
    targets: list[float] = []
    references: list[float] = []
    target_first_by_batch = itertools.cycle((False, True))

    def take(room: int) -> list[float]:
        target_first = next(target_first_by_batch)
        order = (launch, reference) if target_first else (reference, launch)
        ratios = []
        for first, second in timer.run_alternating(order, min(rounds, room), what):
            x, r = (first, second) if target_first else (second, first)
            targets.append(x)
            references.append(r)
            ratios.append(x / r)
        return ratios

    ratios, rows, stop = _sample_until_stopped(take, protocol, telemetry, now, t0)
    seconds = now() - t0

    def both() -> None:
        reference()
        launch()
    _keep_warm(timer, both, protocol)
    absent = _absent(telemetry)
    return PairedMeasurement(Measurement(targets, protocol.regime, stop, warmup, rows, absent, seconds),
                             Measurement(references, protocol.regime, stop, warmup, [], absent, seconds), ratios)
