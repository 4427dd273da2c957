"""Fault injection against the real storages: a journal file, PostgreSQL and Redis on 127.0.0.1.

Workers are forked processes running the search loop (``run_search`` with a :class:`Coordinator`,
what ``mpsearch worker`` runs) with a fast fake backend, so a kill costs no interpreter start and
twenty of them take seconds. Each suite checks what the user is promised:

- **kill -9** at random moments (in the journal's case, half of them while the victim holds the
  journal's lock), while another worker keeps measuring: no process hangs or crashes, no completed
  trial is lost or changed, every configuration a killed worker was measuring is measured later,
  and no configuration is measured twice;
- **SIGSTOP/SIGCONT** of a worker, some pauses longer than ``stale_after`` so its trial is swept
  while it is alive: no worker crashes, and nothing is measured twice;
- **one hostname and pid in two PID namespaces** (simulated: the identities are given): no live
  worker's trial is swept, and a dead one's only by its heartbeat.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from mpsearch.network import Layer, Network
from mpsearch.objectives import CapacityObjective, LatencyObjective
from mpsearch.search.interrupts import recorded_interrupts
from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, REPEAT_ATTR, WORKER_ATTR
from mpsearch.search.run import Budget, run_search
from mpsearch.search.storage import open_storage
from mpsearch.search.workers import SWEPT_ATTR, Coordinator
from mpsearch.search.workers.identity import WORKER_TOKEN_ATTR, WorkerIdentity
from mpsearch.space import SearchSpace
from tests.fakes import FakeBackend
from tests.test_distributed import remove_study, storage_url

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

COMPLETE, FAIL, RUNNING, WAITING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                                    optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
# 3^9 = 19,683 configurations: random proposals rarely repeat, so claims and retries are exercised.
NET = Network("nine", tuple(Layer(f"fc{i}", 64, 64, 64) for i in range(1, 10)))
SPACE = SearchSpace(NET, ("fp16", "fp8_e4m3", "int8"))
FORK = multiprocessing.get_context("fork")
CYCLES = 20


@pytest.fixture(params=["journal", "postgresql", "redis"])
def shared(request, tmp_path, monkeypatch):
    """A study on each storage; removed after the test."""
    kind, name = request.param, f"mpsearch-faults-{uuid.uuid4().hex[:10]}"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    # The journal by a relative path, as `search --workers N` makes it: what a dangling lock pointed to.
    url = storage_url(kind, name, f"studies/{name}.log")
    optuna.create_study(study_name=name, storage=open_storage(url), directions=["minimize", "maximize"])
    yield SimpleNamespace(kind=kind, url=url, name=name, dir=tmp_path)
    remove_study(kind, url, name)


class MarkingBackend(FakeBackend):
    """The fake backend, creating ``mark`` when it starts its first measurement."""

    def __init__(self, mark: Path, **kwargs):
        super().__init__(**kwargs)
        self.mark = mark

    def measure(self, network, config):
        if not self.measured:
            self.mark.touch()
        return super().measure(network, config)


def _work(s, out: Path, seed: int, sleep_s: float, coordinator: dict, budget: dict, worker: WorkerIdentity | None,
          lock_grace_s: float | None) -> None:
    """A worker's life in a forked process; its outcome (or traceback) goes to ``out``."""
    # The test stops it with SIGINT, also under a runner that started with Ctrl-C ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    try:
        if lock_grace_s is not None:
            from mpsearch.search import journal

            journal.JOURNAL_LOCK_GRACE_S = lock_grace_s
        with recorded_interrupts():  # as the CLI runs `mpsearch worker`
            study = optuna.load_study(study_name=s.name, storage=open_storage(s.url),
                                      sampler=optuna.samplers.RandomSampler(seed=seed))
            backend = MarkingBackend(out.with_suffix(".measuring"), sleep_s=sleep_s)
            if worker is not None:
                coordinator = {**coordinator, "worker": worker}
            outcome = run_search(study, SPACE, [LatencyObjective(backend), CapacityObjective()], Budget(**budget),
                                 progress=False, device=backend.capabilities.device,
                                 coordinator=Coordinator(**coordinator))
        out.write_text(json.dumps({"measured": outcome.measured, "lost_tells": outcome.lost_tells,
                                   "stop": outcome.stop_reason}))
    except KeyboardInterrupt:
        out.write_text(json.dumps({"interrupted": True}))
        code = 130
    except BaseException:  # noqa: BLE001 - reported to the test through the file
        out.write_text(json.dumps({"crash": traceback.format_exc()}))
        code = 1
    os._exit(code)


def start(s, tag: str, *, seed: int, sleep_s: float = 0.02, coordinator: dict | None = None,
          budget: dict | None = None, worker: WorkerIdentity | None = None, lock_grace_s: float | None = None):
    out = s.dir / f"{tag}.json"
    proc = FORK.Process(target=_work, args=(s, out, seed, sleep_s, coordinator or {"heartbeat_s": 0.1, "stale_after_s": 5},
                                            budget or {"timeout_s": 600}, worker, lock_grace_s))
    proc.start()
    proc.out = out
    return proc


def result(proc) -> dict:
    assert proc.out.exists(), f"worker {proc.pid} (exit {proc.exitcode}) left no outcome"
    data = json.loads(proc.out.read_text())
    assert "crash" not in data, data["crash"]
    return data


def load(s):
    return optuna.load_study(study_name=s.name, storage=open_storage(s.url))


def owned_by(trial, pid: int) -> bool:
    return trial.user_attrs.get(WORKER_ATTR) == f"{socket.gethostname()}:{pid}"


def holds_journal_lock(s, pid: int) -> bool:
    try:
        return f'"pid":{pid},' in os.readlink(s.dir / "studies" / f"{s.name}.log.lock")
    except OSError:
        return False


def finish(s) -> None:
    """What `mpsearch resume` does: sweep what dead workers left, and measure what they owed."""
    study = optuna.load_study(study_name=s.name, storage=open_storage(s.url), sampler=optuna.samplers.RandomSampler(seed=1))
    coordinator = Coordinator(heartbeat_s=0.1, stale_after_s=5)
    coordinator.sweep(study, force=True)
    owed = sum(1 for t in study.get_trials(deepcopy=False) if t.state == WAITING)
    run_search(study, SPACE, [LatencyObjective(FakeBackend()), CapacityObjective()], Budget(trials=owed + 1),
               progress=False, coordinator=coordinator)


def assert_nothing_measured_twice(study) -> None:
    measured = Counter(t.user_attrs[CONFIG_ATTR] for t in study.trials
                       if t.state == COMPLETE and REPEAT_ATTR not in t.user_attrs)
    assert measured and max(measured.values()) == 1, measured.most_common(3)


def test_kill_minus_nine_at_random_moments_hangs_nothing_loses_nothing_and_measures_nothing_twice(shared):
    s = shared
    rng = random.Random(s.name)
    survivor = start(s, "survivor", seed=0, sleep_s=0.1)  # slower: the study must not grow too large to load fast
    snapshots: list[dict[int, list[float]]] = []
    interrupted: dict[int, str] = {}  # trial number -> configuration a killed worker was measuring
    killed_holding_lock = 0
    for cycle in range(CYCLES):
        victim = start(s, f"victim{cycle}", seed=cycle + 1, sleep_s=0.03)
        if cycle % 4 != 3:  # most kills once it measures; the others anywhere from its start-up on
            while not victim.out.with_suffix(".measuring").exists():
                assert victim.is_alive(), result(victim)
                time.sleep(0.01)
        deadline = time.monotonic() + rng.uniform(0.05, 0.5)
        aim_at_lock = s.kind == "journal" and cycle % 2 == 0
        while time.monotonic() < deadline or (aim_at_lock and time.monotonic() < deadline + 3):
            if aim_at_lock and time.monotonic() >= deadline and holds_journal_lock(s, victim.pid):
                killed_holding_lock += 1
                break
            time.sleep(0 if aim_at_lock and time.monotonic() >= deadline else 0.01)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(30)
        assert victim.exitcode == -signal.SIGKILL, f"the victim exited by itself ({victim.exitcode})"
        study = load(s)
        snapshots.append({t.number: t.values for t in study.trials if t.state == COMPLETE})
        # Its trial in flight, still RUNNING, or already failed by the survivor's sweep.
        interrupted.update({t.number: t.user_attrs[CONFIG_ATTR] for t in study.trials if owned_by(t, victim.pid)
                            and CONFIG_ATTR in t.user_attrs and REPEAT_ATTR not in t.user_attrs
                            and (t.state == RUNNING or SWEPT_ATTR in t.user_attrs)})
        assert survivor.is_alive(), result(survivor)
    before_stop = sum(1 for t in load(s).trials if owned_by(t, survivor.pid) and t.state == COMPLETE)
    time.sleep(0.5)
    os.kill(survivor.pid, signal.SIGINT)
    survivor.join(60)
    # The outcome first: a crash shows its traceback, not only its exit status.
    assert result(survivor) == {"interrupted": True} and survivor.exitcode == 130
    finish(s)

    study = load(s)
    final = {t.number: t for t in study.trials}
    for snapshot in snapshots:  # no completed trial lost or changed
        assert all(final[n].state == COMPLETE and final[n].values == v for n, v in snapshot.items())
    measured = {t.user_attrs[CONFIG_ATTR] for t in study.trials if t.state == COMPLETE}
    assert interrupted and set(interrupted.values()) <= measured  # what the killed were measuring was measured later
    for number in interrupted:
        assert final[number].state == FAIL and "process gone" in final[number].user_attrs[FAIL_ATTR]
    assert_nothing_measured_twice(study)
    assert not [t for t in study.trials if t.state in (RUNNING, WAITING)]
    # The survivor kept measuring while its peers died around it (no hang), and was never swept.
    assert before_stop >= CYCLES
    assert not [t for t in study.trials if owned_by(t, survivor.pid) and SWEPT_ATTR in t.user_attrs
                and t.user_attrs.get(SWEPT_ATTR) != f"{socket.gethostname()}:{os.getpid()}"]
    if s.kind == "journal":
        assert killed_holding_lock >= CYCLES // 4, f"only {killed_holding_lock} kills landed while the lock was held"


def test_pausing_a_worker_crashes_no_worker_and_measures_nothing_twice(shared):
    s = shared
    rng = random.Random(s.name)
    # Pauses of 0.1-1.2 s against a 0.5 s stale limit: about half of them get the paused worker's
    # trial swept while it is alive. A paused journal lock holder's lock is broken after 0.3 s.
    settings = dict(coordinator={"heartbeat_s": 0.1, "stale_after_s": 0.5}, lock_grace_s=0.3,
                    budget={"timeout_s": 600})
    workers = [start(s, f"w{i}", seed=i, sleep_s=0.05, **settings) for i in range(2)]
    for _ in range(CYCLES):
        paused = rng.choice(workers)
        time.sleep(rng.uniform(0.05, 0.2))
        os.kill(paused.pid, signal.SIGSTOP)
        time.sleep(rng.uniform(0.1, 1.2))
        os.kill(paused.pid, signal.SIGCONT)
        assert all(w.is_alive() for w in workers), [result(w) for w in workers if not w.is_alive()]
    time.sleep(0.5)
    for w in workers:
        os.kill(w.pid, signal.SIGINT)
    for w in workers:
        w.join(60)
        assert result(w) == {"interrupted": True} and w.exitcode == 130  # stopped by us, never crashed
    finish(s)
    study = load(s)
    assert_nothing_measured_twice(study)
    swept_alive = [t for t in study.trials if SWEPT_ATTR in t.user_attrs and any(owned_by(t, w.pid) for w in workers)]
    assert swept_alive, "no pause was long enough to get a live worker's trial swept: the test tested nothing"
    assert not [t for t in study.trials if t.state in (RUNNING, WAITING)]


def test_workers_sharing_a_hostname_and_pid_in_different_namespaces_are_not_swept_while_alive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = SimpleNamespace(kind="journal", url=f"journal:{tmp_path}/s.log", name="twins", dir=tmp_path)
    optuna.create_study(study_name=s.name, storage=open_storage(s.url), directions=["minimize", "maximize"])
    host = socket.gethostname()
    # A real worker of this namespace, and two on "other hosts" that share its hostname: one with its
    # very pid, one with a pid that is free here (looking it up here would call it dead).
    real = start(s, "real", seed=1, coordinator={"heartbeat_s": 0.1, "stale_after_s": 1.5})
    free_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 10000
    # The second twin's one measurement lasts a minute, so it is surely holding a trial when it is
    # killed (with short measurements the kill could land between two trials: nothing to sweep).
    twins = [start(s, f"twin{i}", seed=2 + i, sleep_s=sleep_s, coordinator={"heartbeat_s": 0.1, "stale_after_s": 1.5},
                   worker=WorkerIdentity(host, pid, f"twin-token-{i}", f"another-host-boot/pid:[{i}]", 1))
             for i, (pid, sleep_s) in enumerate(((real.pid, 0.02), (free_pid, 60.0)))]
    while not twins[1].out.with_suffix(".measuring").exists():
        assert twins[1].is_alive(), result(twins[1])
        time.sleep(0.01)
    time.sleep(3)  # twice the stale limit: only heartbeats keep the twins' trials alive
    assert not [t for t in load(s).trials if SWEPT_ATTR in t.user_attrs], "a live worker's trial was swept"
    os.kill(twins[1].pid, signal.SIGKILL)
    twins[1].join(10)
    killed_at = time.time()
    swept: list = []
    deadline = time.monotonic() + 30  # 1.5 s stale limit, then a sweep within a heartbeat; slack for a loaded machine
    while not swept and time.monotonic() < deadline:
        time.sleep(0.5)
        study = load(s)
        swept = [t for t in study.trials if SWEPT_ATTR in t.user_attrs]
    assert swept and all(t.user_attrs[WORKER_TOKEN_ATTR] == "twin-token-1" for t in swept)
    assert all("no heartbeat for" in t.user_attrs[FAIL_ATTR] for t in swept)  # judged by heartbeat, not by pid
    assert all(t.datetime_complete.timestamp() >= killed_at + 1.0 for t in swept)
    for w in (real, twins[0]):
        assert w.is_alive()
        os.kill(w.pid, signal.SIGINT)
        w.join(30)
        assert w.exitcode == 130
