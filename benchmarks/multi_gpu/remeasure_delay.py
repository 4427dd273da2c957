"""How long after a worker dies is the configuration it was measuring measured again?

With the default settings (heartbeat every 5 s, a worker silent for 30 s is dead), on each storage
(journal file, PostgreSQL, Redis on 127.0.0.1), a *survivor* worker measures configurations that take
1 s each (a GPU measurement's order of magnitude) while a *victim* worker is killed (SIGKILL) in the
middle of a measurement. Two kinds of victim:

- ``this host``: a process of the survivor's PID namespace, whose death the survivor can see;
- ``another host``: a worker whose identity names another host's namespace (simulated), so only its
  silent heartbeat tells it is dead.

Measured per kill, from the kill: ``swept_s`` (its trial is failed and its configuration queued) and
``remeasured_s`` (a worker starts measuring that configuration again). Workers are forked processes
running the search loop with a fake backend; the storages are real. Writes
benchmarks/results/remeasure_delay.{json,md}::

    PYTHONPATH=. python benchmarks/multi_gpu/remeasure_delay.py [--repeats 3] [--machine "..."]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from mpsearch.network import Layer, Network
from mpsearch.objectives import CapacityObjective, LatencyObjective
from mpsearch.search.record import CONFIG_ATTR, WORKER_ATTR
from mpsearch.search.run import Budget, run_search
from mpsearch.search.storage import open_storage
from mpsearch.search.workers import DEFAULT_HEARTBEAT_S, DEFAULT_STALE_AFTER_S, RETRY_ATTR, Coordinator
from mpsearch.search.workers.identity import WorkerIdentity
from mpsearch.space import SearchSpace
from tests.fakes import FakeBackend

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
NET = Network("nine", tuple(Layer(f"fc{i}", 64, 64, 64) for i in range(1, 10)))
SPACE = SearchSpace(NET, ("fp16", "fp8_e4m3", "int8"))
FORK = multiprocessing.get_context("fork")
MEASURE_S = 1.0


class MarkingBackend(FakeBackend):
    def __init__(self, mark: Path, **kwargs):
        super().__init__(**kwargs)
        self.mark = mark

    def measure(self, network, config):
        self.mark.touch()
        return super().measure(network, config)


def work(url: str, name: str, seed: int, measure_s: float, mark: Path, worker: WorkerIdentity | None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started where Ctrl-C is ignored
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url),
                                  sampler=optuna.samplers.RandomSampler(seed=seed))
        backend = MarkingBackend(mark, sleep_s=measure_s)
        coordinator = Coordinator(**({"worker": worker} if worker else {}))  # the defaults
        run_search(study, SPACE, [LatencyObjective(backend), CapacityObjective()], Budget(timeout_s=3600),
                   progress=False, coordinator=coordinator)
    except KeyboardInterrupt:
        pass
    os._exit(0)


def one_kill(kind: str, url_of, remote: bool, tmp: Path) -> dict:
    name = f"delay-{uuid.uuid4().hex[:10]}"
    url = url_of(name)
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage, directions=["minimize", "maximize"])
    survivor = FORK.Process(target=work, args=(url, name, 0, MEASURE_S, tmp / f"{name}.s", None))
    survivor.start()
    identity = WorkerIdentity("another-host", 4242, uuid.uuid4().hex, "another-boot/pid:[1]", 1) if remote else None
    victim = FORK.Process(target=work, args=(url, name, 1, 600.0, tmp / f"{name}.v", identity))
    victim.start()
    while not (tmp / f"{name}.v").exists() or not (tmp / f"{name}.s").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    killed = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    label = identity.label if identity else f"{socket.gethostname()}:{victim.pid}"
    swept = remeasured = None
    while remeasured is None and time.time() - killed < 300:
        time.sleep(0.2)
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
        mine = [t for t in trials if t.user_attrs.get(WORKER_ATTR) == label and CONFIG_ATTR in t.user_attrs]
        if not mine or mine[-1].datetime_complete is None:
            continue
        swept = mine[-1].datetime_complete.timestamp() - killed
        retry = [t for t in trials if t.user_attrs.get(RETRY_ATTR) == mine[-1].number and t.datetime_start]
        if retry:
            remeasured = retry[0].datetime_start.timestamp() - killed
    os.kill(survivor.pid, signal.SIGINT)
    survivor.join(30)
    if survivor.is_alive():  # the study is deleted next: no worker may be left writing to it
        survivor.kill()
        survivor.join()
    if kind == "postgresql":
        optuna.delete_study(study_name=name, storage=storage)
    return {"storage": kind, "victim": "another host" if remote else "this host",
            "swept_s": round(swept, 2) if swept is not None else None,
            "remeasured_s": round(remeasured, 2) if remeasured is not None else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--machine", default=platform.node())
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        storages = {"journal": lambda n: f"journal:{tmp}/{n}.log", "postgresql": lambda n: PG,
                    "redis": lambda n: f"{REDIS}?prefix={n}"}
        for kind, url_of in storages.items():
            for remote in (False, True):
                for _ in range(args.repeats):
                    runs.append(one_kill(kind, url_of, remote, tmp))
                    print(json.dumps(runs[-1]), flush=True)
    rows = []
    for kind in ("journal", "postgresql", "redis"):
        for victim in ("this host", "another host"):
            these = [r for r in runs if r["storage"] == kind and r["victim"] == victim and r["remeasured_s"] is not None]
            if these:
                rows.append((kind, victim, len(these), statistics.median(r["swept_s"] for r in these),
                             max(r["swept_s"] for r in these), statistics.median(r["remeasured_s"] for r in these),
                             max(r["remeasured_s"] for r in these)))
    doc = {"machine": args.machine, "heartbeat_s": DEFAULT_HEARTBEAT_S, "stale_after_s": DEFAULT_STALE_AFTER_S,
           "measurement_s": MEASURE_S, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "remeasure_delay.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# How long until a dead worker's configuration is measured again",
        "",
        f"Measured on {args.machine} with `benchmarks/multi_gpu/remeasure_delay.py`: default settings "
        f"(heartbeat {DEFAULT_HEARTBEAT_S:g} s, stale after {DEFAULT_STALE_AFTER_S:g} s), a surviving worker "
        f"measuring {MEASURE_S:g}-second configurations, a victim killed (SIGKILL) mid-measurement; seconds after the kill. "
        f"A victim on *another host* is simulated: its identity names another host's PID namespace, so only its "
        f"silent heartbeat tells it is dead.",
        "",
        "| storage | victim | kills | swept (median) | swept (max) | measured again (median) | measured again (max) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {k} | {v} | {n} | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} |" for k, v, n, a, b, c, d in rows]
    missing = [r for r in runs if r["remeasured_s"] is None]
    if missing:
        lines += ["", f"{len(missing)} kills were not measured again within 300 s: {missing}"]
    (RESULTS / "remeasure_delay.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
