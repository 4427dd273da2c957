"""Per-trial cost of the search loop itself, as the study grows: 100, 1,000 and 10,000 stored trials.

What is timed: :func:`mpsearch.search.run.run_search` on a study that already holds N trials, with
Optuna's RandomSampler (a sampler that reads nothing, so its cost is negligible and is timed
separately anyway) and the replay backend (per-op recorded latencies of llama8b-10blocks-prefill:
70 layers, a space far larger than 10,000 configurations, so every proposal is new). Per trial:

- ``interval``: wall time from one measured trial to the next (the whole loop);
- ``sampler``: time in the sampler's methods; ``measure``: time in the objectives' evaluate;
- ``overhead = interval - sampler - measure``: what the loop and the storage cost.

The stored trials (complete, distinct configurations, with the attributes a search writes) are
inserted in one transaction into Optuna's tables (:func:`fill`) rather than run, which would take
hours at 10,000. The one-off costs
of starting (the sweep, reading what is measured) and stopping (the reference point) are reported
apart: they are paid once per search, not per trial.

    python benchmarks/loop_overhead/run.py --storage sqlite --out benchmarks/loop_overhead
    python benchmarks/loop_overhead/run.py --storage postgresql://postgres@127.0.0.1:5432/test \
        --out benchmarks/loop_overhead

Writes ``results-<storage>.json``; ``results.md`` is written from every JSON there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from mpsearch.backends.replay import ReplayBackend
from mpsearch.network import preset
from mpsearch.objectives import CapacityObjective, LatencyObjective
from mpsearch.search import attrs
from mpsearch.search.run import Budget, run_search
from mpsearch.search.storage import open_storage
from mpsearch.search.study import create_study, new_spec
from mpsearch.search.workers import Coordinator
from mpsearch.space import SearchSpace, capacity

NETWORK = "llama8b-10blocks-prefill"
MENU = ("fp16", "fp8_e4m3", "int8")


class TimedSampler(optuna.samplers.RandomSampler):
    """RandomSampler that adds the time spent in it to ``spent``."""

    def __init__(self, seed: int):
        super().__init__(seed=seed)
        self.spent = 0.0

    def _timed(name):  # noqa: N805 - a decorator factory used in the class body
        def method(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return getattr(super(TimedSampler, self), name)(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - t0
        return method

    infer_relative_search_space = _timed("infer_relative_search_space")
    sample_relative = _timed("sample_relative")
    sample_independent = _timed("sample_independent")
    before_trial = _timed("before_trial")
    after_trial = _timed("after_trial")


class TimedObjective:
    """An objective whose evaluate time is added to ``spent``."""

    def __init__(self, inner, clock: list[float]):
        self.inner, self.clock = inner, clock
        self.name, self.direction = inner.name, inner.direction

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def evaluate(self, network, config):
        t0 = time.perf_counter()
        try:
            return self.inner.evaluate(network, config)
        finally:
            self.clock[0] += time.perf_counter() - t0


def stored_trials(space: SearchSpace, backend: ReplayBackend, n: int, seed: int) -> list:
    """``n`` complete trials of distinct random configurations, carrying what a search stores."""
    rng = np.random.default_rng(seed)
    dist = {name: optuna.distributions.CategoricalDistribution(list(MENU)) for name, _ in space.decisions}
    out, seen = [], set()
    while len(out) < n:
        params = {name: MENU[i] for (name, _), i in zip(space.decisions, rng.integers(0, len(MENU), len(space.decisions)))}
        config = space.config_from_params(params)
        if config.key in seen:
            continue
        seen.add(config.key)
        result = backend.measure(space.network, config)
        user = {attrs.CONFIG: config.key, attrs.DEVICE: result.device, **result.as_attrs(), attrs.MEASURE_S: 0.001}
        out.append(optuna.trial.create_trial(
            params=params, distributions=dist, values=[result.ms, float(capacity(space.network, config))],
            user_attrs=user, constraints={attrs.INFEASIBLE_CONSTRAINT: 0.0}))
    return out


def fill(study, trials: list) -> None:
    """Store ``trials`` (complete) in ``study``: in one transaction on an RDB storage (Optuna's
    ``add_trials`` writes each trial's every parameter and attribute with its own queries: minutes
    at 10,000), else with ``add_trials``."""
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    backend = getattr(study._storage, "_backend", study._storage)
    if not isinstance(backend, RDBStorage):
        study.add_trials(trials)
        return
    with _create_scoped_session(backend.scoped_session) as session:
        base = session.query(models.TrialModel).filter(models.TrialModel.study_id == study._study_id).count()
        for i, t in enumerate(trials):
            row = models.TrialModel(number=base + i, study_id=study._study_id, state=t.state,
                                    datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)
            row.params = [models.TrialParamModel(param_name=k, param_value=t.distributions[k].to_internal_repr(v),
                                                 distribution_json=optuna.distributions.distribution_to_json(t.distributions[k]))
                          for k, v in t.params.items()]
            row.values = [models.TrialValueModel(objective=j, value=models.TrialValueModel.value_to_stored_repr(v)[0],
                                                 value_type=models.TrialValueModel.value_to_stored_repr(v)[1])
                          for j, v in enumerate(t.values)]
            row.user_attributes = [models.TrialUserAttributeModel(key=k, value_json=json.dumps(v))
                                   for k, v in t.user_attrs.items()]
            row.system_attributes = [models.TrialSystemAttributeModel(key=k, value_json=json.dumps(v))
                                     for k, v in t.system_attrs.items()]
            session.add(row)


def one_size(url: str, n_stored: int, n_measured: int, seed: int = 0) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    network = preset(NETWORK)
    backend = ReplayBackend()
    space = SearchSpace(network, MENU)
    backend.prepare(network, MENU)
    clock = [0.0]
    objectives = [TimedObjective(LatencyObjective(backend), clock), TimedObjective(CapacityObjective(), clock)]
    storage = open_storage(url)
    name = f"loop-overhead-{n_stored}-{os.getpid()}"
    sampler = TimedSampler(seed)
    spec = new_spec(network, MENU, [o.inner for o in objectives], backend, {"name": "random", "seed": seed})
    study = create_study(storage, url, name, spec, sampler)
    t0 = time.perf_counter()
    fill(study, stored_trials(space, backend, n_stored, seed + 1))
    fill_s = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)  # a fresh cache, as a new run has

    stamps: list[float] = []
    sampler_at: list[float] = []
    measure_at: list[float] = []

    def on_trial(_trial) -> None:
        stamps.append(time.perf_counter())
        sampler_at.append(sampler.spent)
        measure_at.append(clock[0])

    start = time.perf_counter()
    outcome = run_search(study, space, objectives, Budget(trials=n_measured), progress=False,
                         device=backend.capabilities.device, on_trial=on_trial, coordinator=Coordinator())
    end = time.perf_counter()
    assert outcome.measured == n_measured and outcome.repeats == 0, outcome
    intervals = np.diff(stamps)
    samp = np.diff(sampler_at)
    meas = np.diff(measure_at)
    overhead = intervals - samp - meas
    first = stamps[0] - start  # start-up plus the first trial
    optuna.delete_study(study_name=name, storage=storage)
    ms = lambda a: round(float(a) * 1000, 2)  # noqa: E731
    return {
        "stored_trials": n_stored, "measured_trials": n_measured, "fill_s": round(fill_s, 2),
        "interval_ms": {"median": ms(np.median(intervals)), "mean": ms(intervals.mean()), "p90": ms(np.percentile(intervals, 90))},
        "sampler_ms_mean": ms(samp.mean()), "measure_ms_mean": ms(meas.mean()),
        "overhead_ms": {"median": ms(np.median(overhead)), "mean": ms(overhead.mean()), "p90": ms(np.percentile(overhead, 90)),
                        "max": ms(overhead.max())},
        "start_and_first_trial_ms": ms(first), "stop_ms": ms(end - stamps[-1]),
    }


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "optuna": optuna.__version__,
            "platform": platform.platform()}


def storage_url(kind: str, tmp: Path) -> tuple[str, str]:
    """(url, label): ``sqlite`` is a file in a temporary folder; anything else is used as given."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'overhead.db'}", "SQLite (file on local disk)"
    if kind.startswith("postgresql"):
        import sqlalchemy

        with sqlalchemy.create_engine(kind.replace("postgresql://", "postgresql+psycopg://")).connect() as c:
            version = c.execute(sqlalchemy.text("show server_version")).scalar()
        return kind, f"PostgreSQL {version} (same host, over TCP)"
    return kind, kind


NOTES = [
    "## Reading these numbers", "",
    "- Before this loop was reworked (Optuna writing each of the 70 parameters and every attribute in its own"
    " transaction, and the loop reading the whole study on every trial), the same benchmark on the same machine"
    " measured 380 ms per trial at 100 stored trials and 1,030 ms at 1,000 on SQLite.",
    "- What is left is mostly commits: a trial is created, claims its configuration (with its parameters),"
    " writes its results and is told: four transactions. A SQLite commit on this machine's disk costs 7.7 ms"
    " (fsync), so about 31 ms of a trial is the disk; PostgreSQL adds a network round trip per query.",
    "- The machine is shared (load average 1 to 6 during these runs): medians move by 10 to 20 ms between runs"
    " of one size, which is why 100 stored trials can read slower than 1,000.",
    "- The claim check (has another worker measured, or is it measuring, this configuration?) is one query for"
    " the trials that claimed the same configuration (on an RDB storage), not a pass over the study: from 1,000 to"
    " 10,000 stored trials SQLite grows from 36 to 43 ms (it grew from 45 to 81 ms with the pass over Optuna's"
    " cached study), and a search no longer reads the whole study when it starts (28 s at 10,000 before, 0.15 s"
    " now). PostgreSQL still grows from 54 to 75 ms: its query for the configuration's trials scans the study's"
    " attribute rows (Optuna's schema has no index on their values, and mpsearch does not change the schema).",
    "- Target (at most 50 ms at 10,000 stored trials): met on SQLite (43 ms); not met on PostgreSQL (75 ms).",
    "- \"stop\" is paid once per study: its first search fixes the hypervolume reference point from every trial,"
    " read whole (22-24 s at 10,000 here, where the benchmark's study was filled without a search; a later search"
    " reads the stored point).", "",
]


def write_markdown(folder: Path) -> None:
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("results-*.json"))]
    lines = ["# Search-loop overhead per trial, by stored trials", "",
             "Written by `benchmarks/loop_overhead/run.py` (how it is measured: its docstring). Overhead ="
             " the time from one measured trial to the next, minus the sampler's and the objectives' time:"
             " what the loop and the storage cost. Target: at most 50 ms at 10,000 stored trials.", ""]
    for r in results:
        m = r["machine"]
        lines += [f"## {r['storage']}", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work), Python {m['python']}, "
                  f"Optuna {m['optuna']}; network {r['network']} ({r['layers']} layers), replay backend, "
                  f"RandomSampler; {r['runs'][0]['measured_trials']} measured trials per size.", "",
                  "| stored trials | overhead median (ms) | mean | p90 | max | interval median (ms) | sampler mean | "
                  "measure mean | start + first trial (ms) | stop (ms) | fill (s) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for run in r["runs"]:
            o, i = run["overhead_ms"], run["interval_ms"]
            lines.append(f"| {run['stored_trials']:,} | {o['median']} | {o['mean']} | {o['p90']} | {o['max']} | "
                         f"{i['median']} | {run['sampler_ms_mean']} | {run['measure_ms_mean']} | "
                         f"{run['start_and_first_trial_ms']} | {run['stop_ms']} | {run['fill_s']} |")
        lines.append("")
    lines += NOTES
    (folder / "results.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default="sqlite", help="sqlite (a temporary file) or a postgresql://... URL")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--measured", type=int, default=60, help="trials timed per size")
    p.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, label = storage_url(args.storage, Path(tmp))
        runs = []
        for n in args.sizes:
            run = one_size(url, n, args.measured)
            print(json.dumps(run), flush=True)
            runs.append(run)
    kind = "sqlite" if args.storage == "sqlite" else args.storage.split(":", 1)[0]
    doc = {"storage": label, "network": NETWORK, "layers": len(preset(NETWORK).layers), "machine": machine(), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results-{kind}.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_markdown(args.out)


if __name__ == "__main__":
    main()
