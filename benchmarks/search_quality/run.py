"""Search-quality benchmark: hypervolume found vs number of distinct measured configurations.

For one ground truth (a recording directory) and one space, run each sampler for several seeds up to
a budget and record, after every newly measured configuration, the hypervolume of the measured front
as a fraction of the true front's (one reference point for all runs: the nadir of the whole space
pushed out by 10 % of each objective's range, :func:`mpsearch.search.hypervolume.reference_point`).

Budget counts *distinct measured configurations*: a proposal that repeats a measured configuration
is answered from the cache (as mpsearch does, trial attribute ``repeat_of``) and costs nothing; a
sampler that only repeats for 10 × budget proposals is stopped and its run marked short.

Objectives per trial: (latency from the ground truth, minimised; capacity, maximised).

    python benchmarks/search_quality/run.py --data mpsearch/data/recordings/h100 --network mlp6 \
        --menu fp16,fp8_e4m3,int8 --seeds 10 --budget 160 --out benchmarks/results/x.csv
    # llama8b-10blocks-prefill: --ground-truth opsum (sum of recorded per-op latencies)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_truth import EndToEnd, OpSum, additive_ceiling, describe_source, oracle_trials  # noqa: E402

from mpsearch.network import resolve_network  # noqa: E402
from mpsearch.search.hypervolume import hypervolume, reference_point  # noqa: E402
from mpsearch.space import SearchSpace, capacity  # noqa: E402

DIRECTIONS = ["minimize", "maximize"]
SAMPLERS = ("random", "nsga2", "tpe", "layerwise", "gp")  # in order of cost per proposal


def load_truth(args: argparse.Namespace):
    space = SearchSpace(resolve_network(args.network), tuple(args.menu.split(",")))
    if args.ground_truth == "end-to-end":
        gt = EndToEnd.load(Path(args.data), space)
        points = gt.all_points()
        ref = reference_point(points, DIRECTIONS)
        import moocore

        front = points[moocore.is_nondominated(points, maximise=[False, True])]
    else:
        gt = OpSum.load(Path(args.data), space)
        front, box = gt.true_front()
        ref = reference_point(box, DIRECTIONS)
    true_hv = hypervolume(front, ref, DIRECTIONS)
    return space, gt, ref, true_hv, front


def run_one(job: tuple) -> list[dict]:
    import optuna

    from mpsearch.search.samplers import build_sampler

    args, name, seed = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, gt, ref, true_hv, _ = load_truth(args)
    net = space.network
    sampler, _ = build_sampler(name, seed=seed, space=space, directions=DIRECTIONS,
                               exact={1: lambda c: float(capacity(net, c))})
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    measured: dict[str, tuple[float, float]] = {}
    rows, asks, spent = [], 0, 0.0
    started = time.perf_counter()
    while len(measured) < args.budget and asks < 10 * args.budget:
        if args.run_seconds and time.perf_counter() - started > args.run_seconds:
            break  # too slow for the time given: the run is kept, and marked short in the summary
        t0 = time.perf_counter()
        trial = study.ask()
        config = space.suggest(trial)
        spent += time.perf_counter() - t0
        asks += 1
        if config.key in measured:
            trial.set_user_attr("repeat_of", config.key)
            study.tell(trial, measured[config.key])
            continue
        values = (gt.latency(config), float(capacity(net, config)))
        measured[config.key] = values
        study.tell(trial, values)
        hv = hypervolume(list(measured.values()), ref, DIRECTIONS)
        # The stop rule of `mpsearch search --target-hv 0.99`: how sure the model is, to check it
        # against the true fraction.
        confidence = sampler.front_confidence(study, 0.99) if args.confidence and name == "layerwise" else np.nan
        rows.append({"sampler": name, "seed": seed, "measured": len(measured), "asks": asks,
                     "hv_fraction": hv / true_hv, "suggest_s": spent, "confidence99": confidence})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="recording directory (networks.csv, ops.csv)")
    p.add_argument("--network", default="mlp6")
    p.add_argument("--menu", default="fp16,fp8_e4m3,int8")
    p.add_argument("--ground-truth", choices=("end-to-end", "opsum"), default="end-to-end")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    p.add_argument("--seed-list", default=None, help="explicit comma-separated seeds (overrides --seeds)")
    p.add_argument("--budget", type=int, default=160, help="distinct measured configurations per run")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--confidence", action="store_true",
                   help="record the layerwise sampler's front_confidence(0.99) after every measurement")
    p.add_argument("--run-seconds", type=float, default=None,
                   help="stop a run after this many seconds (a slow sampler's run is then kept short, and says so)")
    p.add_argument("--out", required=True, help="CSV of per-measurement hypervolume fractions")
    args = p.parse_args(argv)
    space, gt, ref, true_hv, front = load_truth(args)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    # Slowest samplers first, so they do not start last on a pool of workers.
    names = sorted(args.samplers.split(","), key=lambda n: -SAMPLERS.index(n) if n in SAMPLERS else 0)
    jobs = [(args, name, seed) for name in names for seed in seeds]
    print(f"{space.network.name} over {','.join(space.menu)}: {space.size} configurations, true front "
          f"{len(front)} points, HV {true_hv:.6g} at reference {ref}; {describe_source(gt.backend)}", flush=True)
    meta = {"network": space.network.name, "menu": ",".join(space.menu), "space_size": space.size,
            "source": describe_source(gt.backend), "device": gt.backend.recording.device,
            "ground_truth": args.ground_truth, "reference": ref, "true_hv": true_hv,
            "true_front_points": len(front), "budget": args.budget}
    meta["oracle_trials"] = oracle_trials(front, ref, DIRECTIONS)
    if isinstance(gt, EndToEnd):
        resid, ceiling = additive_ceiling(gt, ref, DIRECTIONS)
        meta["additive_fit_rms"] = f"{resid:.4f}"
        meta["additive_fit_front_hv"] = f"{ceiling:.4f}"
    print(f"oracle (true-front points, best first) reaches 95/99/100 % with {meta['oracle_trials']}; "
          + (f"best additive fit: RMS residual {resid:.2%} of the mean latency, its front's true HV fraction "
             f"{ceiling:.4f}" if isinstance(gt, EndToEnd) else ""), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = ["sampler", "seed", "measured", "asks", "hv_fraction", "suggest_s", "confidence99"]
    # Each finished run is appended at once, so a run cut short still leaves every finished one.
    with out.open("w") as fh:
        for k, v in meta.items():
            fh.write(f"# {k}: {v}\n")
        fh.write(",".join(columns) + "\n")
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for rows in pool.imap_unordered(run_one, jobs):
            pd.DataFrame(rows, columns=columns).to_csv(out, mode="a", header=False, index=False)
            last = rows[-1]
            print(f"  {last['sampler']:10s} seed {last['seed']:2d}: {last['measured']} measured in {last['asks']} asks, "
                  f"HV {last['hv_fraction']:.4f}, {last['suggest_s']:.1f} s suggesting", flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
