"""The timing protocol on CPU, against a fake power-capped GPU: the stopping rule, the steady-state
detector, the regimes, interleaving, and the telemetry parsing (NVML present, missing, refusing)."""

from __future__ import annotations

import math
import random
import statistics
import sys
import types

import pytest

from mpsearch.backends import telemetry as tel
from mpsearch.backends import timing
from mpsearch.backends.timing import TimingProtocol, median_ci, relative_ci_halfwidth
from mpsearch.errors import InvalidSpecError


class Work:
    """A launch the fake GPU knows the cost of (at the boost clock)."""

    def __init__(self, ms: float, name: str = "w"):
        self.ms, self.name = ms, name

    def __call__(self) -> None:  # never called by the fake; the fake reads .ms
        raise AssertionError("the fake GPU does not run launches")


class FakeGpu:
    """A GPU that holds its ``boost`` clock for ``hold_s`` of busy time, then falls toward ``cap``
    (time constant ``tau_s`` of busy time), and recovers when idle; a sample takes ``ms * boost / clock``, times a
    drift factor that grows with wall time, plus Gaussian noise. Time is simulated: ``now``."""

    def __init__(self, boost: float = 1980, cap: float = 1440, hold_s: float = 0.08, tau_s: float = 0.03, noise: float = 0.0,
                 drift_per_s: float = 0.0, overhead_s: float = 2e-4, seed: int = 0, bimodal: tuple[float, float] | None = None):
        self.boost, self.cap, self.hold_s, self.tau_s = boost, cap, hold_s, tau_s
        self.noise, self.drift_per_s, self.overhead_s = noise, drift_per_s, overhead_s
        self.bimodal = bimodal  # (probability, factor): some samples run slower by factor
        self.t = 0.0
        self.heat = 0.0
        self.rng = random.Random(seed)
        self.batches = 0
        self.orders: list[list[str]] = []

    def clock(self) -> float:
        past = max(0.0, self.heat - self.hold_s)
        return self.cap + (self.boost - self.cap) * math.exp(-past / self.tau_s)

    def run_batch(self, launch, n, what):
        self.batches += 1
        out = []
        for _ in range(n):
            ms = launch.ms * self.boost / self.clock() * (1 + self.drift_per_s * self.t)
            if self.bimodal and self.rng.random() < self.bimodal[0]:
                ms *= self.bimodal[1]
            ms *= 1 + self.noise * self.rng.gauss(0, 1)
            out.append(ms)
            self.t += ms / 1000 + self.overhead_s
            self.heat += ms / 1000
        return out

    def run_alternating(self, launches, rounds, what):
        self.orders.append([launch.name for launch in launches])
        return [[self.run_batch(launch, 1, what)[0] for launch in launches] for _ in range(rounds)]

    def idle(self, seconds):
        self.t += seconds
        self.heat = max(0.0, self.heat - 3 * seconds)

    def now(self):
        return self.t


class FakeTelemetry:
    available = True
    why_absent = ""

    def __init__(self, gpu: FakeGpu):
        self.gpu = gpu

    def read(self):
        capped = self.gpu.clock() < self.gpu.boost - 20
        return tel.TelemetryReading(round(self.gpu.clock()), 3201, 700.0 if capped else 400.0, 60, 0x4 if capped else 0)

    def limits(self):
        return {"power_limit_w": 700.0}


def _measure(gpu, ms=4.0, protocol=None, telemetry=True):
    protocol = protocol or TimingProtocol()
    return timing.measure(Work(ms), protocol, gpu, FakeTelemetry(gpu) if telemetry else None, now=gpu.now)


# --- statistics and the stopping rule -------------------------------------------------------------

def test_the_median_confidence_interval_brackets_the_median_and_narrows_with_more_samples():
    rng = random.Random(1)
    small = [rng.gauss(10, 0.5) for _ in range(20)]
    large = small + [rng.gauss(10, 0.5) for _ in range(380)]
    for xs in (small, large):
        lo, hi = median_ci(xs)
        assert lo <= statistics.median(xs) <= hi
    assert relative_ci_halfwidth(large) < relative_ci_halfwidth(small) / 2
    assert relative_ci_halfwidth([1.0]) == math.inf


NO_MIN_TIME = TimingProtocol(min_sample_s=0)


def test_sampling_stops_as_soon_as_the_median_is_pinned_to_half_a_percent():
    gpu = FakeGpu(noise=0.002)
    m = _measure(gpu, protocol=NO_MIN_TIME)
    assert m.stop == timing.CONVERGED and m.converged
    assert relative_ci_halfwidth(m.samples) <= 0.005
    assert 10 <= len(m.samples) <= 30  # quiet data needs few samples


def test_noisier_data_gets_more_samples_before_it_converges():
    quiet = _measure(FakeGpu(noise=0.002, seed=3), protocol=NO_MIN_TIME)
    noisy = _measure(FakeGpu(noise=0.02, seed=3), protocol=NO_MIN_TIME)
    assert noisy.converged and len(noisy.samples) > 2 * len(quiet.samples)


def test_sampling_lasts_at_least_the_minimum_time_to_average_over_the_power_controller():
    gpu = FakeGpu(noise=0.002)
    m = _measure(gpu, protocol=TimingProtocol(min_sample_s=0.3))
    sampled_ms = sum(m.samples)
    assert m.converged and sampled_ms >= 0.3 * 1000 * 0.9  # samples alone fill most of the 0.3 s


def test_a_bimodal_sample_stream_is_not_called_converged_and_the_time_cap_is_recorded():
    gpu = FakeGpu(bimodal=(0.5, 1.12), seed=2)
    m = _measure(gpu, protocol=TimingProtocol(sample_cap_s=0.3))
    assert m.stop == timing.TIME_CAP and not m.converged
    assert m.summary()["stop"] == "time cap"
    assert m.summary()["n_samples"] == len(m.samples) >= 10


def test_the_sample_cap_ends_sampling_when_it_comes_first():
    m = _measure(FakeGpu(noise=0.05), protocol=TimingProtocol(max_samples=12, sample_cap_s=100))
    assert m.stop == timing.SAMPLE_CAP and len(m.samples) == 12


# --- the steady state -----------------------------------------------------------------------------

def test_sustained_samples_are_taken_at_the_power_cap_not_in_the_boost_state():
    gpu = FakeGpu(noise=0.001)
    m = _measure(gpu)
    capped = 4.0 * gpu.boost / gpu.cap
    assert m.warmup["steady"] is True
    assert abs(m.median_ms - capped) / capped < 0.005  # the boost state (4.0 ms) is not in the median
    assert min(m.samples) > 4.0 * 1.2


def test_warm_up_gives_up_at_its_cap_on_a_clock_that_never_settles_and_says_so():
    gpu = FakeGpu(drift_per_s=0.3)  # latency keeps growing: every window differs from the last
    m = _measure(gpu, protocol=TimingProtocol(warmup_cap_s=0.5))
    assert m.warmup["steady"] is False
    assert 0.5 <= m.warmup["seconds"] < 0.6


def _iterations(ms, clocks, dt=0.01):
    return [timing._Iteration(t=i * dt, ms=a, sm_mhz=c) for i, (a, c) in enumerate(zip(ms, clocks))]


def test_the_steady_detector_needs_latency_and_clock_to_settle_in_two_windows():
    flat = [4.0] * 20
    assert timing.is_steady(_iterations(flat, [1440] * 20), 0.05, 0.005, 0.01)
    moving_clock = [1500 - 10 * i for i in range(20)]
    assert not timing.is_steady(_iterations(flat, moving_clock), 0.05, 0.005, 0.01)
    drifting = [4.0 * (1 + 0.002 * i) for i in range(20)]
    assert not timing.is_steady(_iterations(drifting, [1440] * 20), 0.05, 0.005, 0.01)
    assert timing.is_steady(_iterations(flat, [None] * 20), 0.05, 0.005, 0.01)  # no telemetry: latency decides
    assert not timing.is_steady(_iterations(flat[:4], [1440] * 4), 0.05, 0.005, 0.01)  # too few iterations


class LaggingPowerGpu(FakeGpu):
    """Like the real GPU under its power cap: the averaged power climbs to the limit over about a
    second of load (time constant ``power_tau_s``), and the clock steps down as it climbs, a
    decline slow enough to look steady over a short window."""

    def __init__(self, power_tau_s: float = 0.4, **kwargs):
        super().__init__(**kwargs)
        self.power_tau_s = power_tau_s

    def power(self) -> float:
        return 150 + 550 * (1 - math.exp(-self.heat / self.power_tau_s))

    def clock(self) -> float:
        if self.heat < self.hold_s:
            return self.boost
        return self.boost - (self.boost - self.cap) * (self.power() - 150) / 550


class LaggingTelemetry(FakeTelemetry):
    def read(self):
        capped = self.gpu.heat >= self.gpu.hold_s
        return tel.TelemetryReading(round(self.gpu.clock()), 3201, self.gpu.power(), 60, 0x4 if capped else 0)


def test_under_the_cap_the_warm_up_waits_for_the_averaged_power_to_reach_the_limit():
    gpu = LaggingPowerGpu(noise=0.001)
    m = timing.measure(Work(4.0), TimingProtocol(), gpu, LaggingTelemetry(gpu), now=gpu.now)
    assert m.warmup["steady"] and m.warmup["power_w"] >= 0.95 * 700
    settled = 4.0 * gpu.boost / gpu.cap
    assert abs(m.median_ms - settled) / settled < 0.02
    # Judged on latency and clock alone (no power limit known), the same GPU looks steady too early.
    gpu = LaggingPowerGpu(noise=0.001)
    blind = LaggingTelemetry(gpu)
    blind.limits = lambda: {}
    early = timing.measure(Work(4.0), TimingProtocol(), gpu, blind, now=gpu.now)
    assert early.warmup["seconds"] < m.warmup["seconds"]
    assert abs(early.median_ms - settled) / settled > 0.02


# --- the burst regime -----------------------------------------------------------------------------

def test_burst_idles_the_gpu_first_and_samples_the_boost_state():
    gpu = FakeGpu(noise=0.001)
    gpu.heat = 10.0  # hot from earlier work
    m = _measure(gpu, protocol=TimingProtocol(regime="burst", cool_s=5.0))
    assert m.warmup == {"regime": "burst", "idle_s": 5.0}
    assert m.median_ms < 4.0 * 1.1  # near the boost-clock latency, not the capped 5.5 ms
    assert m.stop in (timing.CONVERGED, timing.BURST_WINDOW)


# --- interleaving and racing ----------------------------------------------------------------------

def test_interleaving_spreads_drift_over_the_candidates_that_sequential_timing_would_bias():
    protocol = TimingProtocol(min_samples=20, max_samples=20, sample_cap_s=100)
    a, b = Work(2.0, "a"), Work(2.0, "b")  # the same kernel twice
    gpu = FakeGpu(drift_per_s=0.2, noise=0.0005, seed=5)
    seq = [timing.measure(w, protocol, gpu, now=gpu.now).median_ms for w in (a, b)]
    gpu = FakeGpu(drift_per_s=0.2, noise=0.0005, seed=5)
    inter = timing.measure_interleaved({"a": a, "b": b}, protocol, gpu, now=gpu.now)
    seq_gap = abs(seq[1] - seq[0]) / seq[0]
    inter_gap = abs(inter["b"].median_ms - inter["a"].median_ms) / inter["a"].median_ms
    assert seq_gap > 0.005  # timed one after the other, drift makes identical kernels differ
    assert inter_gap < seq_gap / 4


def test_racing_drops_clearly_slower_candidates_and_keeps_their_samples():
    gpu = FakeGpu(noise=0.01, seed=7)
    launches = {"fast": Work(1.0), "close": Work(1.01), "slow": Work(1.5)}
    out = timing.measure_interleaved(launches, TimingProtocol(), gpu, FakeTelemetry(gpu), race_margin=0.05, now=gpu.now)
    assert out["slow"].eliminated and out["slow"].stop == "eliminated"
    assert len(out["slow"].samples) >= 10
    assert not out["fast"].eliminated and not out["close"].eliminated
    assert len(out["fast"].samples) > len(out["slow"].samples)
    assert min(out, key=lambda n: out[n].median_ms) == "fast"


class HoldingGpu(FakeGpu):
    """A fake GPU that records what the protocol leaves queued after a measurement."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.holds: list[tuple[float, float]] = []

    def hold(self, launch, seconds):
        self.holds.append((getattr(launch, "ms", None), seconds))


def test_a_latency_timed_against_a_reference_repeats_its_ratio_where_the_capped_clock_moves_the_latency():
    # Two processes whose GPUs settle at different clocks under the cap, one of them drifting: the
    # latency alone differs by several percent, its ratio to a reference timed alongside does not.
    protocol = TimingProtocol(sample_cap_s=2.0)
    target, reference = Work(3.0, "target"), Work(4.0, "reference")
    alone, ratios = [], []
    for cap, drift, seed in ((1440, 0.0, 1), (1530, 0.03, 2)):
        gpu = FakeGpu(cap=cap, drift_per_s=drift, noise=0.002, seed=seed)
        alone.append(_measure(gpu, ms=3.0, protocol=protocol).median_ms)
        gpu = FakeGpu(cap=cap, drift_per_s=drift, noise=0.002, seed=seed)
        paired = timing.measure_against_reference(target, reference, protocol, gpu, FakeTelemetry(gpu), now=gpu.now)
        assert paired.stop == timing.CONVERGED
        assert len(paired.target.samples) == len(paired.reference.samples) == len(paired.ratios)
        assert paired.ratios == [x / r for x, r in zip(paired.target.samples, paired.reference.samples)]
        ratios.append(paired.ratio)
    assert max(alone) / min(alone) > 1.05
    assert max(ratios) / min(ratios) < 1.005
    assert ratios[0] == pytest.approx(0.75, rel=0.005)


def test_a_paired_measurement_alternates_which_launch_goes_first_and_keeps_the_gpu_loaded_with_both():
    gpu = HoldingGpu(noise=0.002)
    paired = timing.measure_against_reference(Work(2.0, "target"), Work(3.0, "reference"), NO_MIN_TIME, gpu,
                                              FakeTelemetry(gpu), now=gpu.now)
    assert len(gpu.orders) >= 2
    assert gpu.orders[0] == ["reference", "target"]
    assert all(a == b[::-1] for a, b in zip(gpu.orders, gpu.orders[1:]))
    assert paired.target.telemetry and paired.summary()["rounds"] == len(paired.ratios)
    assert len(gpu.holds) == 1  # a launch running both, the pair's load


# --- telemetry ------------------------------------------------------------------------------------

def test_throttle_reason_bits_are_named_and_unknown_bits_kept():
    assert tel.throttle_names(0) == []
    assert tel.throttle_names(0x4) == ["SwPowerCap"]
    assert tel.throttle_names(0x4 | 0x1 | 0x1000) == ["GpuIdle", "SwPowerCap", "0x1000"]


class _NVMLError(Exception):
    pass


def _fake_nvml(fail_init: bool = False, fail_reads: bool = False):
    nvml = types.SimpleNamespace(
        NVMLError=_NVMLError, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0, seen_bus=[],
    )

    def init():
        if fail_init:
            raise _NVMLError("Insufficient Permissions")

    def by_bus(bus):
        nvml.seen_bus.append(bus)
        return "h"

    def clock(handle, which):
        if fail_reads:
            raise _NVMLError("GPU is lost")
        return {1: 1440, 2: 3201}[which]

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetHandleByPciBusId_v2 = by_bus
    nvml.nvmlDeviceGetHandleByIndex = lambda i: "h"
    nvml.nvmlDeviceGetClockInfo = clock
    nvml.nvmlDeviceGetPowerUsage = lambda h: 698_500
    nvml.nvmlDeviceGetTemperature = lambda h, s: 61
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x4
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nvml.nvmlDeviceGetMaxClockInfo = lambda h, which: {1: 1980, 2: 3201}[which]
    return nvml


def test_nvml_readings_are_parsed_into_clocks_power_and_reason_names():
    nvml = _fake_nvml()
    t = tel.open_telemetry("00000000:19:00.0", nvml=nvml)
    assert t.available and nvml.seen_bus == ["00000000:19:00.0"]
    row = t.read().as_row()
    assert row == {"sm_mhz": 1440, "mem_mhz": 3201, "power_w": 698.5, "temp_c": 61, "throttle": ["SwPowerCap"]}
    assert t.limits() == {"power_limit_w": 700.0, "max_sm_mhz": 1980, "max_mem_mhz": 3201}


def test_nvml_missing_or_refusing_gives_absent_telemetry_with_a_one_line_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    missing = tel.open_telemetry()
    assert not missing.available and "nvidia-ml-py" in missing.why_absent and missing.read() is None
    refused = tel.open_telemetry(nvml=_fake_nvml(fail_init=True))
    assert not refused.available and "Insufficient Permissions" in refused.why_absent
    assert "\n" not in refused.why_absent


def test_a_failed_read_is_skipped_and_a_measurement_without_telemetry_records_why():
    flaky = tel.open_telemetry(nvml=_fake_nvml(fail_reads=True))
    assert flaky.available and flaky.read() is None
    gpu = FakeGpu(noise=0.002)
    m = timing.measure(Work(4.0), TimingProtocol(), gpu, tel.NoTelemetry("NVML refused (no permission)"), now=gpu.now)
    assert m.converged and m.telemetry == []
    assert m.summary()["telemetry"] == {"absent": "NVML refused (no permission)"}


def test_telemetry_rows_come_with_the_samples_and_are_summarized():
    gpu = FakeGpu(noise=0.002)
    m = _measure(gpu)
    rows = m.telemetry
    assert rows and all(r["after_sample"] <= len(m.samples) for r in rows)
    summary = m.summary()["telemetry"]
    assert summary["throttle_seen"] == ["SwPowerCap"]
    assert summary["sm_mhz"]["median"] < 1500


# --- the protocol's own validation ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"regime": "cold"}, "regime must be one of sustained, burst"),
    ({"target_ci": 0}, "target_ci must be a number > 0"),
    ({"min_samples": 50, "max_samples": 10}, "min_samples <= max_samples"),
    ({"cool_s": -1}, "cool_s must be a number >= 0"),
])
def test_a_bad_protocol_is_refused_in_one_line(kwargs, words):
    with pytest.raises(InvalidSpecError) as err:
        TimingProtocol(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


# --- the regime is part of a study's identity -------------------------------------------------------

def _spec(backend):
    from mpsearch.search.record import StudySpec

    return StudySpec(network={"name": "n", "layers": [1]}, fingerprint="f", menu=["fp16"], objectives=[],
                     backend=backend, sampler={"name": "tpe"}, mpsearch_version="0")


def test_resuming_with_another_regime_or_gpu_library_is_refused_naming_it():
    from mpsearch.search.study import spec_differences

    sustained = {"backend": "cutlass", "source": "measured", "device": "H200", "regime": "sustained"}
    assert spec_differences(_spec(sustained), _spec(dict(sustained))) == []
    diffs = spec_differences(_spec(sustained), _spec({**sustained, "regime": "burst"}))
    assert diffs == ["timing regime: stored sustained, requested burst"]
    diffs = spec_differences(_spec(sustained), _spec({**sustained, "backend": "torch"}))
    assert diffs == ["latency source: stored measured (cutlass), requested measured (torch)"]


def test_a_sustained_measurement_leaves_the_gpu_loaded_for_the_host_gap_and_a_burst_one_does_not():
    gpu = HoldingGpu()
    _measure(gpu, ms=3.0)
    assert gpu.holds == [(3.0, TimingProtocol().keep_warm_s)]
    _measure(gpu, ms=3.0, protocol=TimingProtocol(regime="burst"))
    _measure(gpu, ms=3.0, protocol=TimingProtocol(keep_warm_s=0))
    assert len(gpu.holds) == 1


def test_an_interleaved_comparison_leaves_the_fastest_candidate_running():
    gpu = HoldingGpu()
    timing.measure_interleaved({"slow": Work(5.0, "slow"), "fast": Work(2.0, "fast")}, NO_MIN_TIME, gpu,
                               FakeTelemetry(gpu), now=gpu.now)
    assert [ms for ms, _ in gpu.holds] == [2.0]
