"""The search-quality suite: every table of the layerwise sampler's targets, on CPU, in one command.

    python benchmarks/search_quality/suite.py --data mpsearch/data/recordings/h100 --out benchmarks/results/search_quality_suite_h100

Experiments (``--only`` picks some; each writes ``OUT/<name>.csv`` and a section of ``OUT/README.md``):

- ``pyramid72``: a 72-layer network with 72 distinct GEMM shapes, roofline latency (A100, fp16/int8/int4;
  exactly additive, exact front by a Pareto DP); measurements to 99 % of the true hypervolume.
- ``mlp6``: mlp6 over fp16/fp8/int8 replayed from the recording ``--data``; every configuration scored
  by its true latency (the recording's multi-pass value: the median of its passes).
- ``proxies``: latency from the recording and a non-additive accuracy proxy (threshold, product,
  pairwise), both modelled; layerwise against Optuna's GPSampler at 60 measurements.
- ``infeasible``: an 8-layer MLP two of whose layers cannot run in fp8 (k not a multiple of 16), roofline
  H100; hypervolume at 60 and the share of measurements spent on refused configurations.
- ``workers``: 8 simulated workers asking together on ``pyramid72``: rounds and measurements to 99 %.
- ``constraint``: mlp6 (recording) with ``latency<=BOUND``: measurements until the best configuration
  meeting the bound (largest capacity) is measured.
- ``timing``: seconds per proposal at 72 distinct layers and at 224 layers (all of Llama-3-8B), one thread.
- ``bounds``: what the recording allows on mlp6: a search that knows the latency's exact additive part
  (only each configuration's deviation from it unknown), how sure such a search can honestly be of
  99 % along the layerwise sampler's runs, and how the sampler's latency model is off where the true
  front lies.

Every run uses seeds 0..N-1 (``--seeds``); budgets are in the tables. Nothing is measured on a GPU.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per run: the proposal times are single-threaded

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_truth import oracle_trials  # noqa: E402
from simulate import codes_of, simulate  # noqa: E402
from spaces import AdditiveTruth, llama8b_whole, misaligned8, pyramid72  # noqa: E402

from mpsearch.network import preset  # noqa: E402
from mpsearch.search.hypervolume import hypervolume, reference_point  # noqa: E402
from mpsearch.space import SearchSpace, capacity  # noqa: E402

LAT_CAP = ["minimize", "maximize"]
EXPERIMENTS = ("pyramid72", "mlp6", "proxies", "infeasible", "workers", "constraint", "stop", "timing", "bounds")


def _sampler(name: str, space: SearchSpace, directions, seed: int, exact=None, **settings):
    from mpsearch.search.samplers import build_sampler

    sampler, _ = build_sampler(name, seed=seed, space=space, directions=list(directions), exact=exact,
                               settings=settings or None)
    return sampler


def _capacity_exact(space: SearchSpace):
    return {1: lambda c: float(capacity(space.network, c))}


def _median(values) -> float:
    """Median of measurements-to-target over seeds; a seed that never got there (NaN) counts as
    beyond every budget, not as absent (dropping it would flatter the median)."""
    values = [v if np.isfinite(v) else np.inf for v in values]
    return float(np.median(values)) if values else float("nan")


def _fmt(x: float) -> str:
    return "not reached within the budget" if not np.isfinite(x) else f"{x:g}"


# --- ground truths ------------------------------------------------------------------------------


class Recording:
    """mlp6 over a menu, replayed from a recording: what a search sees (the replay backend's value)
    and what scores it (the recording's multi-pass value: the median of the configuration's
    passes, each pass one measurement; the same value replay serves)."""

    def __init__(self, data: Path, menu=("fp16", "fp8_e4m3", "int8")):
        from mpsearch.backends.replay import ReplayBackend

        self.space = SearchSpace(preset("mlp6"), tuple(menu))
        backend = ReplayBackend(data)
        self.device = backend.recording.device
        self.true = {config.key: backend.measure(self.space.network, config).ms for config in self.space.all_configs()}
        self.seen = self.true  # replay serves the multi-pass value itself
        self.source = f"replayed from {data} ({self.device})"

    def latency(self, config) -> float:
        return self.seen[config.key]


def _hv_setup(points: np.ndarray, directions) -> tuple[list[float], float, np.ndarray]:
    import moocore

    ref = reference_point(points, directions)
    front = points[moocore.is_nondominated(points, maximise=[d == "maximize" for d in directions])]
    return ref, hypervolume(front, ref, directions), front


def _rescore(trace_values, truth: dict, space: SearchSpace, keys, ref, directions, true_hv) -> list[float]:
    """Hypervolume fractions after each measurement with every found configuration scored by its
    true latency (column 0) instead of the value the search saw."""
    out, points = [], []
    for key, values in zip(keys, trace_values):
        points.append((truth[key], *values[1:]) if key is not None else None)
        pts = [p for p in points if p is not None]
        out.append(hypervolume(pts, ref, directions) / true_hv if pts else 0.0)
    return out


# --- experiments --------------------------------------------------------------------------------


def exp_pyramid72(args) -> tuple[pd.DataFrame, list[str]]:
    space = SearchSpace(pyramid72(), ("fp16", "int8", "int4"))
    truth = AdditiveTruth.roofline(space, "a100")
    front = truth.true_front()
    ref = reference_point(truth.box(), LAT_CAP)
    true_hv = hypervolume(front, ref, LAT_CAP)
    oracle = oracle_trials(front, ref, LAT_CAP)
    rows = []
    for seed in range(args.seeds):
        trace = simulate(space, lambda c: tuple(truth.values(codes_of(space, c))[0]),
                         _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space)), LAT_CAP, ref, true_hv, 80)
        rows.append({"seed": seed, "to_99": trace.measurements_to(0.99), "hv_at_30": trace.hv_fraction[29],
                     "hv_at_60": trace.hv_fraction[59], "hv_at_80": trace.hv_fraction[-1],
                     "ask_s_mean": float(np.mean(trace.ask_seconds))})
    df = pd.DataFrame(rows)
    md = ["## pyramid72: 72 distinct layers, roofline A100, {fp16, int8, int4}, 3^72 configurations", "",
          f"- exact front: {len(front)} points (Pareto DP, never thinned); oracle (true-front points, largest "
          f"gain first) reaches 95/99/100 % after {oracle}",
          f"- layerwise, budget 80, seeds 0..{args.seeds - 1}: **median {_fmt(_median(df['to_99']))} measurements "
          f"to 99 %** (target <= 60); per seed {df['to_99'].tolist()}",
          f"- hypervolume fraction at 30 / 60 / 80: medians {df['hv_at_30'].median():.4f} / "
          f"{df['hv_at_60'].median():.4f} / {df['hv_at_80'].median():.4f}", ""]
    return df, md


def exp_mlp6(args) -> tuple[pd.DataFrame, list[str]]:
    rec = Recording(args.data)
    space = rec.space
    keys = [c.key for c in space.all_configs()]
    points = np.array([[rec.true[k], capacity(space.network, c)] for k, c in zip(keys, space.all_configs())])
    ref, true_hv, front = _hv_setup(points, LAT_CAP)
    rows = []
    for seed in range(args.seeds_mlp6):
        trace = simulate(space, lambda c: (rec.latency(c), float(capacity(space.network, c))),
                         _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space)), LAT_CAP, ref, true_hv, 80)
        scored = _rescore(trace.values, rec.true, space, trace.keys, ref, LAT_CAP, true_hv)
        to99 = next((i + 1 for i, h in enumerate(scored) if h >= 0.99 * (1 - 1e-12)), float("nan"))
        rows.append({"seed": seed, "to_99_true": to99, "to_99_as_seen": trace.measurements_to(0.99),
                     "hv_true_at_36": scored[35], "hv_true_at_60": scored[59]})
    df = pd.DataFrame(rows)
    md = [f"## mlp6 over fp16/fp8/int8, {rec.source}", "",
          f"- true latency of a configuration: the recording's multi-pass value (the median of its passes, what replay serves); the search sees the "
          f"replay backend's value; true front {len(front)} points of 729",
          f"- layerwise, budget 80, seeds 0..{args.seeds_mlp6 - 1}: **median {_fmt(_median(df['to_99_true']))} "
          f"measurements to 99 % (scored by true latency)** (target <= 36); per seed {df['to_99_true'].tolist()}",
          f"- hypervolume fraction (true latency) at 36 / 60: medians {df['hv_true_at_36'].median():.4f} / "
          f"{df['hv_true_at_60'].median():.4f}", ""]
    return df, md


def _proxies(space: SearchSpace):
    """Accuracy-like proxies to maximise; each depends on the formats in a way no per-layer sum does."""
    layers = space.network.layers
    sens = np.array([0.5, 1.0, 0.8, 0.6, 1.2, 2.0])[: len(layers)]
    err = {"fp16": 0.0, "bf16": 0.1, "fp8_e4m3": 1.0, "int8": 0.6, "int4": 3.0}
    k = np.array([l.k for l in layers], dtype=float)
    full = float((k * 16).sum())

    def e(config):
        return np.array([err[f] for f in config.formats])

    def threshold(config):  # a cliff: below 70 % of the full capacity, 3 points of accuracy are lost
        cap = capacity(space.network, config)
        return 1.0 - 0.01 * float(sens @ e(config)) - (0.03 if cap < 0.7 * full else 0.0)

    def product(config):  # per-layer retention factors multiply
        return float(np.prod(1.0 - 0.08 * sens * e(config)))

    pairs = [(0, 1), (1, 4), (2, 5), (0, 3), (3, 4)]

    def pairwise(config):  # errors of some pairs of layers (not only neighbours) compound
        x = e(config)
        return 1.0 - 0.01 * float(sens @ x) - 0.015 * sum(x[i] * x[j] for i, j in pairs)

    return {"threshold": threshold, "product": product, "pairwise": pairwise}


def exp_proxies(args) -> tuple[pd.DataFrame, list[str]]:
    rec = Recording(args.data)
    space = rec.space
    configs = list(space.all_configs())
    rows = []
    directions = ["minimize", "maximize"]
    for pname, proxy in _proxies(space).items():
        if pname not in args.proxy_names.split(","):
            continue
        points = np.array([[rec.true[c.key], proxy(c)] for c in configs])
        ref, true_hv, front = _hv_setup(points, directions)
        for sampler_name in args.proxy_samplers.split(","):
            for seed in range(args.seeds_proxies):
                started = time.perf_counter()
                trace = simulate(space, lambda c: (rec.latency(c), proxy(c)),
                                 _sampler(sampler_name, space, directions, seed), directions, ref, true_hv, 60)
                scored = _rescore(trace.values, rec.true, space, trace.keys, ref, directions, true_hv)
                rows.append({"proxy": pname, "sampler": sampler_name, "seed": seed, "hv_true_at_60": scored[-1],
                             "hv_true_at_30": scored[29], "front_points": len(front),
                             "seconds": time.perf_counter() - started})
                print(f"  proxies {pname} {sampler_name} seed {seed}: {scored[-1]:.4f}", flush=True)
    df = pd.DataFrame(rows)
    earlier = args.out / "proxies.csv"
    if earlier.exists():  # runs not repeated now keep their rows (GP takes long; its runs do not change)
        kept = pd.read_csv(earlier)
        rerun = kept["sampler"].isin(set(df["sampler"])) & kept["proxy"].isin(set(df["proxy"]))
        df = pd.concat([kept[~rerun], df], ignore_index=True)
    table = df.groupby(["proxy", "sampler"])["hv_true_at_60"].agg(["median", "min", "count"]).reset_index()
    md = [f"## Non-additive accuracy proxies: latency ({rec.source}) + a proxy, both modelled, mlp6 fp16/fp8/int8",
          "", "Hypervolume fraction of the true front after 60 measurements (latency scored by its true value); "
          "targets: >= 0.995 and at or above GP on each.", "",
          "| proxy | sampler | median | worst | seeds | seeds >= 0.995 |", "| --- | --- | --- | --- | --- | --- |"]
    reached = df.assign(ok=df["hv_true_at_60"] >= 0.995).groupby(["proxy", "sampler"])["ok"].sum()
    md += [f"| {r.proxy} | {r.sampler} | {r.median:.4f} | {r.min:.4f} | {r.count} | {int(reached[(r.proxy, r.sampler)])} |"
           for r in table.itertuples()]
    md += ["", "Proxies (maximised; `benchmarks/search_quality/suite.py:_proxies`): threshold = 1 - 0.01 Σ s_l e(f_l) "
           "- 0.03 when capacity < 70 % of all-fp16; product = Π (1 - 0.08 s_l e(f_l)); pairwise = 1 - 0.01 Σ s_l e_l "
           "- 0.015 Σ over 5 layer pairs e_i e_j; e(fp16, fp8, int8) = 0, 1, 0.6.", ""]
    return df, md


def exp_infeasible(args) -> tuple[pd.DataFrame, list[str]]:
    from mpsearch.backends.roofline import RooflineBackend
    from mpsearch.errors import UnsupportedConfigError

    space = SearchSpace(misaligned8(), ("fp16", "fp8_e4m3", "int8"))
    backend = RooflineBackend("h100")
    lat = {}
    for config in space.all_configs():
        try:
            lat[config.key] = backend.measure(space.network, config).ms
        except UnsupportedConfigError:
            lat[config.key] = None
    feasible = [c for c in space.all_configs() if lat[c.key] is not None]
    points = np.array([[lat[c.key], capacity(space.network, c)] for c in feasible])
    ref, true_hv, front = _hv_setup(points, LAT_CAP)
    rows = []
    for seed in range(args.seeds):
        trace = simulate(space, lambda c: None if lat[c.key] is None else (lat[c.key], float(capacity(space.network, c))),
                         _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space)), LAT_CAP, ref, true_hv, 60)
        rows.append({"seed": seed, "hv_at_60": trace.hv_fraction[-1], "hv_at_40": trace.hv_fraction[39],
                     "infeasible": trace.infeasible, "to_99": trace.measurements_to(0.99)})
    df = pd.DataFrame(rows)
    md = [f"## Infeasible layer/format pairs: {space.network.description}, roofline H100, fp16/fp8/int8", "",
          f"- {space.size} configurations, {space.size - len(feasible)} of them refused (fc3 and fc6 cannot run fp8); "
          f"true front {len(front)} points",
          f"- layerwise, 60 measurements, seeds 0..{args.seeds - 1}: hypervolume fraction median "
          f"**{df['hv_at_60'].median():.4f}** (worst {df['hv_at_60'].min():.4f}; target >= 0.99); measurements "
          f"spent on refused configurations: median **{df['infeasible'].median():g} of 60** (max {df['infeasible'].max()}; "
          f"target <= 6); 99 % after a median of {_fmt(_median(df['to_99']))}", ""]
    return df, md


def exp_workers(args) -> tuple[pd.DataFrame, list[str]]:
    space = SearchSpace(pyramid72(), ("fp16", "int8", "int4"))
    truth = AdditiveTruth.roofline(space, "a100")
    ref = reference_point(truth.box(), LAT_CAP)
    true_hv = hypervolume(truth.true_front(), ref, LAT_CAP)
    rows = []
    for workers in (1, 8):
        for seed in range(args.seeds):
            trace = simulate(space, lambda c: tuple(truth.values(codes_of(space, c))[0]),
                             _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space)), LAT_CAP, ref, true_hv,
                             120, workers=workers)
            rows.append({"workers": workers, "seed": seed, "rounds_to_99": trace.rounds_to(0.99),
                         "measurements_to_99": trace.measurements_to(0.99)})
    df = pd.DataFrame(rows)
    seq, par = df[df.workers == 1], df[df.workers == 8]
    r1, r8 = _median(seq["rounds_to_99"]), _median(par["rounds_to_99"])
    m1, m8 = _median(seq["measurements_to_99"]), _median(par["measurements_to_99"])
    md = ["## 8 workers asking together (pyramid72, roofline A100)", "",
          "Each round, 8 trials are asked before any is told (the others are RUNNING when each asks).", "",
          f"- sequential: median {_fmt(r1)} rounds = {_fmt(m1)} measurements to 99 %",
          f"- 8 workers: median **{_fmt(r8)} rounds** ({r8 / r1:.2f} of sequential; target <= 0.25) and "
          f"**{_fmt(m8)} measurements** ({m8 / m1:.2f}x; target <= 1.5x); seeds 0..{args.seeds - 1}", ""]
    return df, md


def exp_constraint(args) -> tuple[pd.DataFrame, list[str]]:
    rec = Recording(args.data)
    space = rec.space
    bound = args.bound
    configs = list(space.all_configs())
    ok = [c for c in configs if rec.true[c.key] <= bound]
    best_cap = max(capacity(space.network, c) for c in ok)
    winners = {c.key for c in ok if capacity(space.network, c) == best_cap}
    points = np.array([[rec.true[c.key], capacity(space.network, c)] for c in configs])
    ref, true_hv, _ = _hv_setup(points, LAT_CAP)
    rows = []
    for seed in range(args.seeds_mlp6):
        for name in ("layerwise", "tpe"):
            sampler = _sampler(name, space, LAT_CAP, seed, _capacity_exact(space), constraints=[f"latency<={bound}"]) \
                if name == "layerwise" else _sampler(name, space, LAT_CAP, seed)
            trace = simulate(space, lambda c: (rec.latency(c), float(capacity(space.network, c))), sampler, LAT_CAP,
                             ref, true_hv, 30, constraints=lambda v: {f"latency<={bound:g}": v[0] - bound},
                             metric_names=["latency", "capacity"])
            hit = next((i + 1 for i, k in enumerate(trace.keys) if k in winners), float("nan"))
            rows.append({"sampler": name, "seed": seed, "found_best_at": hit})
    df = pd.DataFrame(rows)
    lw = df[df.sampler == "layerwise"]
    md = [f"## --constraint latency<={bound:g} on mlp6 ({rec.source}); best = largest capacity meeting it", "",
          f"- {len(ok)} of 729 configurations meet the bound (true latency); the best capacity is {best_cap:,} "
          f"({len(winners)} configuration(s))",
          f"- layerwise: the best found within 30 measurements in **{int(lw['found_best_at'].notna().sum())} of {len(lw)}** "
          f"seeds, after a median of {_fmt(_median(lw['found_best_at']))} (per seed {lw['found_best_at'].tolist()})",
          f"- TPE with the same Optuna constraint: {int(df[df.sampler == 'tpe']['found_best_at'].notna().sum())} of "
          f"{len(lw)} within 30", ""]
    return df, md


def exp_stop(args) -> tuple[pd.DataFrame, list[str]]:
    rec = Recording(args.data)
    pyr = SearchSpace(pyramid72(), ("fp16", "int8", "int4"))
    truth = AdditiveTruth.roofline(pyr, "a100")
    cases = {"pyramid72": (pyr, lambda c: tuple(truth.values(codes_of(pyr, c))[0]), None,
                           reference_point(truth.box(), LAT_CAP), truth.true_front()),
             "mlp6": (rec.space, lambda c: (rec.latency(c), float(capacity(rec.space.network, c))), rec.true, None, None)}
    rows = []
    for label, (space, evaluate, true_latency, ref, front) in cases.items():
        if label not in args.stop_spaces.split(","):
            continue
        if ref is None:
            points = np.array([[true_latency[c.key], capacity(space.network, c)] for c in space.all_configs()])
            ref, true_hv, _ = _hv_setup(points, LAT_CAP)
        else:
            true_hv = hypervolume(front, ref, LAT_CAP)
        for seed in range(args.seeds):
            sampler = _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space), reference_point=list(ref))
            confident = []

            def watch(study):  # the stop rule, checked after every measurement until it fires
                if confident and confident[-1] >= 0.95:
                    return confident[-1]
                confident.append(sampler.front_confidence(study, 0.99))
                return confident[-1]

            trace = simulate(space, evaluate, sampler, LAT_CAP, ref, true_hv, args.stop_budget, watch=watch)
            fraction = trace.hv_fraction if true_latency is None else \
                _rescore(trace.values, true_latency, space, trace.keys, ref, LAT_CAP, true_hv)
            needed = next((i + 1 for i, h in enumerate(fraction) if h >= 0.99 * (1 - 1e-12)), float("nan"))
            stop = next((i + 1 for i, c in enumerate(trace.watched) if c >= 0.95), float("nan"))
            rows.append({"space": label, "seed": seed, "needed": needed, "stopped_at": stop,
                         "fraction_at_stop": fraction[int(stop) - 1] if np.isfinite(stop) else float("nan")})
            print(f"  stop {label} seed {seed}: needed {needed}, stopped at {stop}", flush=True)
    df = pd.DataFrame(rows)
    md = ["## --target-hv 0.99: when the stop rule fires (confidence >= 0.95) against when 99 % was truly reached", "",
          "| space | seed | truly needed | stopped at | ratio | true fraction at stop |", "| --- | --- | --- | --- | --- | --- |"]
    md += [f"| {r.space} | {r.seed} | {_fmt(r.needed)} | {_fmt(r.stopped_at)} | {r.stopped_at / r.needed:.2f} | "
           f"{r.fraction_at_stop:.4f} |" for r in df.itertuples()]
    early = int((df["fraction_at_stop"] < 0.99).sum())
    md += ["", f"Target: within ~1.5x of the measurements truly needed, never early. Early stops: **{early}** of "
           f"{len(df)}; budget {args.stop_budget}; the reference point is the true front's, given to the sampler "
           "(as `mpsearch enumerate` stores it).", ""]
    return df, md


def exp_timing(args) -> tuple[pd.DataFrame, list[str]]:
    rows = []
    for label, space, device in (("72 distinct layers (pyramid72)", SearchSpace(pyramid72(), ("fp16", "int8", "int4")), "a100"),
                                 ("224 layers (Llama-3-8B, 32 blocks)", SearchSpace(llama8b_whole(), ("fp16", "fp8_e4m3", "int8")), "h100")):
        truth = AdditiveTruth.roofline(space, device)
        ref = reference_point(truth.box(), LAT_CAP)
        true_hv = hypervolume(truth.true_front(), ref, LAT_CAP)
        trace = simulate(space, lambda c: tuple(truth.values(codes_of(space, c))[0]),
                         _sampler("layerwise", space, LAT_CAP, 0, _capacity_exact(space)), LAT_CAP, ref, true_hv, 100)
        cpu, wall = np.array(trace.ask_cpu_seconds), np.array(trace.ask_seconds)
        for upto in (20, 60, 100):
            sl = slice(max(0, upto - 20), upto)
            rows.append({"space": label, "measurements": f"{sl.start + 1}-{upto}", "median_cpu_s": float(np.median(cpu[sl])),
                         "max_cpu_s": float(cpu[sl].max()), "median_wall_s": float(np.median(wall[sl]))})
    df = pd.DataFrame(rows)
    md = ["## Seconds per proposal, one thread (OPENBLAS/OMP threads = 1)", "",
          "CPU seconds of the proposing process (the machine is shared; wall time is given too).", "",
          "| space | proposals | median CPU s | max CPU s | median wall s |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {r.space} | {r.measurements} | {r.median_cpu_s:.3f} | {r.max_cpu_s:.3f} | {r.median_wall_s:.3f} |"
           for r in df.itertuples()]
    md += ["", "Targets: <= 0.3 s at 72 distinct layers, <= 1 s at 224 layers. The max includes the proposals at "
           "which the model's full hyperparameter search runs (every count up to 16, then 20, 24, 29, 35, 42, 51 and 62).", ""]
    return df, md


def exp_bounds(args) -> tuple[pd.DataFrame, list[str]]:
    """Oracles on the recorded mlp6: the layer-additive least-squares fit to every configuration's true
    latency is known exactly, each configuration's deviation from it is not (drawn from the fit's
    residuals: a configuration's deviation is independent of the others')."""
    import moocore

    from mpsearch.search.layerwise.acquisition import hv_improvement
    from mpsearch.search.layerwise.features import Structure

    rec = Recording(args.data)
    space = rec.space
    configs = list(space.all_configs())
    st = Structure(space)
    index = {f: i for i, f in enumerate(space.menu)}
    codes = np.array([[index[c[members[0]]] for _, members in space.decisions] for c in configs])
    row = {c.key: i for i, c in enumerate(configs)}
    lat = np.array([rec.true[c.key] for c in configs])
    cap = np.array([capacity(space.network, c) for c in configs], dtype=float)
    points = np.stack([lat, cap], axis=1)
    ref, true_hv, _ = _hv_setup(points, LAT_CAP)
    mref = np.array([ref[0], -ref[1]])  # minimisation-oriented
    design = st.design(codes)
    additive = design @ np.linalg.lstsq(design, lat, rcond=None)[0]
    resid = lat - additive
    on_front = moocore.is_nondominated(points, maximise=[False, True])

    def hv_min(values: np.ndarray) -> float:
        inside = values[np.all(values < mref, axis=1)]
        return float(moocore.hypervolume(inside, ref=mref)) if len(inside) else 0.0

    def oracle_search(seed: int, draws: int = 256, budget: int = 60) -> float:
        """EHVI over every unmeasured configuration with the exact additive part; starts at the
        largest capacity (the exact objective's best)."""
        rng = np.random.default_rng(seed)
        measured = [int(np.argmax(cap))]
        while len(measured) < budget:
            if hv_min(np.stack([lat[measured], -cap[measured]], 1)) >= 0.99 * true_hv * (1 - 1e-12):
                return float(len(measured))
            left = np.setdiff1d(np.arange(len(lat)), measured)
            pred = np.stack([additive[left][None, :] + rng.choice(resid, (draws, len(left))),
                             np.broadcast_to(-cap[left], (draws, len(left)))], axis=-1)
            gain = hv_improvement(pred, np.stack([lat[measured], -cap[measured]], 1), mref).mean(axis=0)
            measured.append(int(left[np.argmax(gain)]))
        return float("nan")

    def oracle_confidence(measured: list[int], rng: np.random.Generator, draws: int = 200) -> float:
        """P(found >= 99 % of the true front) when only the unmeasured deviations are unknown."""
        left = np.setdiff1d(np.arange(len(lat)), measured)
        found_pts = np.stack([lat[measured], -cap[measured]], 1)
        found = hv_min(found_pts)
        hits = 0
        for _ in range(draws):
            drawn = np.stack([additive[left] + rng.choice(resid, len(left)), -cap[left]], 1)
            hits += found >= 0.99 * hv_min(np.concatenate([found_pts, drawn]))
        return hits / draws

    checkpoints = (40, 60, 80, 90)
    rows = []
    for seed in range(args.seeds_mlp6):
        # The reference point given, as in the stop experiment, so the stop rule's estimate compares.
        sampler = _sampler("layerwise", space, LAT_CAP, seed, _capacity_exact(space), reference_point=list(ref))
        calib = {}

        def watch(study, sampler=sampler, calib=calib):  # the latency model where the true front lies
            if len(study.trials) in checkpoints:
                calib[f"rule_confidence_at_{len(study.trials)}"] = sampler.front_confidence(study, 0.99)
            if len(study.trials) == 35:
                obs = sampler.observations(study)
                posts = sampler.fit(obs, np.random.default_rng(seed), 128)
                seen = {tuple(r) for r in obs.codes}
                left = np.array([i for i in np.flatnonzero(on_front) if tuple(codes[i]) not in seen])
                pred = sampler.predict_samples(codes[left], posts, np.random.default_rng(seed))[:, :, 0]
                z = (lat[left] - pred.mean(axis=0)) / pred.std(axis=0)
                calib.update(z_mean=float(z.mean()), below_5=float(np.mean((pred < lat[left]).mean(axis=0) < 0.05)),
                             bias=float(np.mean(pred.mean(axis=0) / lat[left] - 1)), unmeasured_front=len(left))
            return 0.0

        trace = simulate(space, lambda c: (rec.latency(c), float(capacity(space.network, c))), sampler, LAT_CAP,
                         ref, true_hv, max(checkpoints), watch=watch)
        scored = _rescore(trace.values, rec.true, space, trace.keys, ref, LAT_CAP, true_hv)
        measured = [row[k] for k in trace.keys]
        rng = np.random.default_rng(seed)
        out = {"seed": seed, "oracle_to_99": oracle_search(seed),
               "sampler_to_99": next((i + 1 for i, h in enumerate(scored) if h >= 0.99 * (1 - 1e-12)), float("nan")),
               **calib}
        for n in checkpoints:
            out[f"fraction_at_{n}"] = scored[n - 1]
            out[f"oracle_confidence_at_{n}"] = oracle_confidence(measured[:n], rng)
        rows.append(out)
        print(f"  bounds seed {seed}: oracle {out['oracle_to_99']}, sampler {out['sampler_to_99']}, "
              f"oracle confidence at 60/90 {out['oracle_confidence_at_60']:.3f}/{out['oracle_confidence_at_90']:.3f}",
              flush=True)
    df = pd.DataFrame(rows)
    rms = float(np.sqrt(np.mean((resid / lat) ** 2)))
    md = [f"## What the recording allows on mlp6 ({rec.source})", "",
          f"The oracle knows the latency's layer-additive part exactly (the sampler's model, least squares on all 729 "
          f"true latencies; residual RMS {rms:.1%}, worst {np.abs(resid / lat).max():.0%}); only each configuration's "
          "deviation from it is unknown, drawn from that fit's residuals.", "",
          f"- EHVI with that oracle model, over every unmeasured configuration: **median {_fmt(_median(df['oracle_to_99']))} "
          f"measurements to 99 %** (per seed {df['oracle_to_99'].tolist()}); the layerwise sampler: median "
          f"{_fmt(_median(df['sampler_to_99']))} (per seed {df['sampler_to_99'].tolist()}; given the reference point)",
          f"- the sampler's latency model after 35 measurements, at the true-front configurations not yet measured "
          f"(median {df['unmeasured_front'].median():g} of {int(on_front.sum())}): predicted "
          f"{df['bias'].median():+.1%} slower than they are (median over seeds), z = (true - predicted mean) / predicted sd "
          f"{df['z_mean'].median():+.2f}, {df['below_5'].median():.0%} below the predictive 5 % quantile",
          "- the probability that the sampler's measured front holds 99 % of the true front: the oracle's (the stop "
          "rule's question answered with the exact additive part) and the stop rule's own estimate "
          "(`front_confidence`; it fires at 0.95), medians over seeds (max in brackets):", "",
          "| measurements | true fraction found | oracle confidence | stop rule's confidence |", "| --- | --- | --- | --- |"]
    md += [f"| {n} | {df[f'fraction_at_{n}'].median():.4f} | {df[f'oracle_confidence_at_{n}'].median():.3f} "
           f"({df[f'oracle_confidence_at_{n}'].max():.3f}) | {df[f'rule_confidence_at_{n}'].median():.3f} "
           f"({df[f'rule_confidence_at_{n}'].max():.3f}) |" for n in checkpoints]
    md += ["", f"Seeds 0..{args.seeds_mlp6 - 1}; the oracle's confidence uses 200 draws of the unmeasured deviations.", ""]
    return df, md


def _write_readme(readme: Path, args, sections: dict) -> None:
    lines = ["# Search-quality suite (CPU; nothing measured on a GPU)", "",
             f"Command: `python benchmarks/search_quality/suite.py --data {args.data} --out {args.out}` "
             "(`--only NAME,...` reruns some experiments and keeps the other sections)", ""]
    for name in EXPERIMENTS:
        if name in sections:
            lines += [f"<!-- experiment {name} -->", *sections[name]]
    readme.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("mpsearch/data/recordings/h100"), help="recording folder (mlp6 end to end)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", default=",".join(EXPERIMENTS), help=f"comma-separated subset of {', '.join(EXPERIMENTS)}")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (mlp6 and constraint use --seeds-mlp6)")
    p.add_argument("--seeds-mlp6", type=int, default=10)
    p.add_argument("--seeds-proxies", type=int, default=15,
                   help="seeds of the proxies experiment: one configuration can be worth 1 %% of its hypervolume, "
                        "so 5 seeds are too few to compare samplers")
    p.add_argument("--bound", type=float, default=3.0, help="latency bound (ms) of the constraint experiment")
    p.add_argument("--proxy-samplers", default="layerwise,gp")
    p.add_argument("--proxy-names", default="threshold,product,pairwise", help="proxies of the proxies experiment")
    p.add_argument("--stop-budget", type=int, default=100)
    p.add_argument("--stop-spaces", default="pyramid72,mlp6", help="spaces of the stop experiment")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.node() and 'CPU dev box'}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    readme = args.out / "README.md"
    sections = {}
    if readme.exists():  # keep the sections of experiments not rerun now
        current = None
        for line in readme.read_text().splitlines():
            if line.startswith("<!-- experiment "):
                current = line.split()[2]
                sections[current] = []
            elif current:
                sections[current].append(line)
    for name in args.only.split(","):
        started, load = time.perf_counter(), os.getloadavg()[0]
        print(f"{name} ...", flush=True)
        df, md = globals()[f"exp_{name}"](args)
        df.to_csv(args.out / f"{name}.csv", index=False)
        took = time.perf_counter() - started
        sections[name] = md + [f"_{time.strftime('%Y-%m-%d')}, {machine}, {took:.0f} s wall (load average {load:.1f} at start: the machine is shared); data: `{name}.csv`_", ""]
        print("\n".join(md), flush=True)
        _write_readme(readme, args, sections)  # after each experiment: a run cut short keeps what it did
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
