"""Several workers on one study, on the real storages: a journal file, PostgreSQL and Redis on
127.0.0.1 (CI starts them; a test fails, never skips, when a server is unreachable).

Workers are real processes (``python -m mpsearch.cli worker``) with the roofline backend and a
plug-in objective (``tests.fakes:slow_capacity``) that sleeps a few ms per measurement, so workers
really interleave, and logs every measurement it makes: that log is the ground truth for "nothing
lost, nothing measured twice".
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR, WORKER_ATTR
from mpsearch.search.run import Budget, run_search
from mpsearch.search.storage import open_storage
from mpsearch.search.workers import (
    COLLISION_ATTR, GPU_ATTR, HEARTBEAT_ATTR, RETRY_ATTR, SWEPT_ATTR, Coordinator, Heartbeat, is_measurement,
    sweep_stale_trials,
)
from mpsearch.search.workers.identity import WorkerIdentity, process_namespace, process_start_time
from tests.conftest import REPO

pytestmark = pytest.mark.distributed

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
COMPLETE, FAIL, RUNNING, WAITING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                                    optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
OBJECTIVES = ("--objective", "latency", "--objective", "cap=tests.fakes:slow_capacity:maximize")
PLUGIN = OBJECTIVES[2:]  # what `worker` and `resume` must be told again: a stored study names no code to run
FAST = ("--heartbeat", "0.5", "--stale-after", "30")


def require_server(port: int, what: str) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as err:
        pytest.fail(f"{what} on 127.0.0.1:{port} is unreachable ({err}); the distributed tests run against the real "
                    f"server: start it (.ci/run shows how)", pytrace=False)


def storage_url(kind: str, name: str, journal: str) -> str:
    """A URL of storage ``kind`` for study ``name`` (``journal``: the journal file's path); fails,
    never skips, when the server is unreachable."""
    if kind == "journal":
        return f"journal:{journal}"
    if kind == "postgresql":
        require_server(5432, "PostgreSQL")
        return PG
    require_server(6379, "Redis")
    return f"{REDIS}?prefix={name}"


def remove_study(kind: str, url: str, name: str) -> None:
    """Delete a test's study from a shared server (a journal file goes with its temporary folder)."""
    if kind == "postgresql":
        try:
            optuna.delete_study(study_name=name, storage=open_storage(url))
        except KeyError:
            pass
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{name}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(params=["journal", "postgresql", "redis"])
def shared(request, tmp_path):
    """A storage URL of each kind and a study name no other test uses; the study is removed after."""
    kind, name = request.param, f"mpsearch-test-{uuid.uuid4().hex[:12]}"
    url = storage_url(kind, name, f"{tmp_path}/study.log")
    yield SimpleNamespace(kind=kind, url=url, name=name, log=tmp_path / "measured.txt", cwd=tmp_path)
    remove_study(kind, url, name)


def spawn(s, *args, sleep_s=0.005) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPSEARCH_FAKE_LOG": str(s.log), "MPSEARCH_FAKE_SLEEP_S": str(sleep_s),
           "MPSEARCH_FAKE_START_LOG": str(s.log) + ".start"}
    return subprocess.Popen([sys.executable, "-m", "mpsearch.cli", *args], cwd=s.cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"
    return out


def create(s, *extra) -> None:
    finish(spawn(s, "search", "mlp6", "--study-name", s.name, "--storage", s.url, "--backend", "roofline",
                 "--no-progress", "--seed", "11", *OBJECTIVES, *extra))


def load(s):
    return optuna.load_study(study_name=s.name, storage=open_storage(s.url))


def measured_log(s, started=False) -> list[tuple[int, str]]:
    """(pid, config) of each measurement finished (or, with ``started``, begun) by the plug-in."""
    path = Path(str(s.log) + ".start") if started else s.log
    if not path.exists():
        return []
    return [(int(pid), config) for pid, config in (line.split() for line in path.read_text().splitlines())]


# --- the done-when criteria ---------------------------------------------------------------------

@pytest.mark.slow
def test_four_workers_times_fifty_trials_lose_nothing_and_measure_nothing_twice(shared):
    s = shared
    # Random proposals: the storage and the claims are what is tested here, and random proposals
    # collide more often. Four layerwise workers refitting on up to 200 trials took minutes on two
    # loaded cores; the kill and resume tests below run the default sampler with workers.
    create(s, "--workers", "0", "--trials", "200", "--sampler", "random")
    procs = [spawn(s, "worker", s.name, "--storage", s.url, "--trials", "50", "--worker-index", str(i),
                   "--no-progress", *PLUGIN, *FAST) for i in range(4)]
    outs = [finish(p) for p in procs]
    study = load(s)
    measured = [t for t in study.trials if t.state == COMPLETE and is_measurement(t)]
    configs = Counter(t.user_attrs[CONFIG_ATTR] for t in measured)
    log = measured_log(s)
    # 0 lost: every measurement a worker made is a stored, completed trial (and only those).
    assert len(measured) == 200 and len(log) == 200
    assert sorted(c for _, c in log) == sorted(configs)
    # 0 duplicated: no configuration measured twice, by one worker or by two.
    assert max(configs.values()) == 1
    per_worker = Counter(t.user_attrs[WORKER_ATTR] for t in measured)
    assert sorted(per_worker.values()) == [50, 50, 50, 50]
    assert {pid for pid, _ in log} == {p.pid for p in procs}
    # provenance: every trial names its worker, its GPU (here: the host's CPU) and the latency's device
    assert all(t.user_attrs["latency_device"] == "NVIDIA H100 80GB HBM3" and t.user_attrs["latency_source"] == "model"
               and t.user_attrs[GPU_ATTR].startswith(socket.gethostname()) for t in measured)
    assert sorted({t.user_attrs["worker_index"] for t in measured}) == [0, 1, 2, 3]
    assert not [t for t in study.trials if t.state in (RUNNING, WAITING)]
    # the only failed trials are collisions (a configuration another worker was measuring)
    assert all(COLLISION_ATTR in t.user_attrs for t in study.trials if t.state == FAIL)
    assert all("stopped: trial budget reached (50 measurements)" in o for o in outs)


@pytest.mark.slow
def test_kill_minus_nine_then_resume_loses_no_completed_trial_and_remeasures_the_interrupted(shared):
    # The commands a user runs, killed for real; tests/test_fault_injection.py kills many more workers.
    s = shared
    cycles = {"journal": 3, "postgresql": 2, "redis": 2}[s.kind]
    create(s, "--trials", "1")
    rng = random.Random(s.name)
    snapshots: list[dict[int, list[float]]] = []
    interrupted: list[tuple[int, str, int]] = []  # (trial number, config, killed pid)
    for cycle in range(cycles):
        # Alternate the two ways of continuing a study: both sweep the dead worker's trial at start.
        command = "resume" if cycle % 2 else "worker"
        proc = spawn(s, command, s.name, "--storage", s.url, "--trials", "10000", "--no-progress", *PLUGIN, *FAST,
                     sleep_s=0.2)
        deadline = time.monotonic() + 120
        while True:  # at least 2 measurements done, and one under way
            done = sum(1 for pid, _ in measured_log(s) if pid == proc.pid)
            begun = sum(1 for pid, _ in measured_log(s, started=True) if pid == proc.pid)
            if done >= 2 and begun > done:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker measured nothing in 120 s"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))  # anywhere in the 0.2 s measurement
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        study = load(s)
        snapshots.append({t.number: t.values for t in study.trials if t.state == COMPLETE})
        interrupted += [(t.number, t.user_attrs[CONFIG_ATTR], proc.pid) for t in study.trials
                        if t.state == RUNNING and CONFIG_ATTR in t.user_attrs and "repeat_of" not in t.user_attrs]
    finish(spawn(s, "resume", s.name, "--storage", s.url, "--trials", "3", "--no-progress", *PLUGIN, *FAST))

    study = load(s)
    final = {t.number: t for t in study.trials}
    for snapshot in snapshots:  # 0 completed trials lost, none changed
        assert all(final[n].state == COMPLETE and final[n].values == v for n, v in snapshot.items())
    assert len(interrupted) == cycles, "every kill landed inside a measurement"
    host = socket.gethostname()
    for number, config, pid in interrupted:  # every interrupted trial failed with the reason, and re-measured
        t = final[number]
        assert t.state == FAIL and t.user_attrs[FAIL_ATTR].startswith(f"worker {host}:{pid} stopped (no heartbeat since ")
        chain = number
        while True:
            retries = [r for r in study.trials if r.user_attrs.get(RETRY_ATTR) == chain]
            assert len(retries) == 1, f"trial {chain} re-enqueued {len(retries)} times"
            retry = retries[0]
            assert retry.user_attrs[CONFIG_ATTR] == config
            if retry.state == COMPLETE:
                break
            assert retry.state == FAIL and SWEPT_ATTR in retry.user_attrs  # the retry itself was killed
            chain = retry.number
    measured = Counter(t.user_attrs[CONFIG_ATTR] for t in study.trials if t.state == COMPLETE and is_measurement(t))
    assert max(measured.values()) == 1
    assert not [t for t in study.trials if t.state == WAITING]
    # A kill inside ask() (the sampler at work) leaves a trial with no owner and no configuration:
    # nothing was measured; it is swept once --stale-after has passed. Any other is swept at once.
    assert all(CONFIG_ATTR not in t.user_attrs and WORKER_ATTR not in t.user_attrs
               for t in study.trials if t.state == RUNNING)


# --- the mechanisms, in-process against each storage ------------------------------------------------

def _new_study(s):
    return optuna.create_study(study_name=s.name, storage=open_storage(s.url), directions=["minimize", "maximize"],
                               sampler=optuna.samplers.RandomSampler(seed=0))


def elsewhere(pid, host="elsewhere"):
    """A worker process in another host's (or container's) namespace: its pid cannot be looked up here."""
    return WorkerIdentity(host, pid, f"token-{host}-{pid}", "another-boot/pid:[1]", 1000)


def _running_trial(study, config_params, worker, heartbeat):
    """A RUNNING trial as another worker leaves it mid-measurement (claimed, beating or not)."""
    study.enqueue_trial(config_params)
    trial = study.ask()
    for k in config_params:
        trial.suggest_categorical(k, ["fp16", "int8"])
    trial.set_user_attr(CONFIG_ATTR, ",".join(config_params.values()))
    for key, value in worker.attrs().items():
        trial.set_user_attr(key, value)
    trial.set_user_attr(HEARTBEAT_ATTR, heartbeat)
    return trial


def test_a_dead_workers_trial_is_failed_and_requeued_exactly_once_by_racing_sweepers(shared):
    study = _new_study(shared)
    dead = _running_trial(study, {"fc1": "int8", "fc2": "fp16"}, elsewhere(1), time.time() - 3600)
    live = _running_trial(study, {"fc1": "fp16", "fc2": "fp16"}, elsewhere(2), time.time())
    views = [optuna.load_study(study_name=shared.name, storage=open_storage(shared.url)) for _ in range(4)]
    results: list = []
    threads = [threading.Thread(target=lambda v=v, i=i: results.append(sweep_stale_trials(v, 60, me=elsewhere(100 + i, "sweeper"))))
               for i, v in enumerate(views)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    swept = [x for r in results for x in r]
    assert [x.number for x in swept] == [dead.number]  # one winner among the four sweepers
    trials = {t.number: t for t in study.get_trials()}
    assert trials[dead.number].state == FAIL
    assert trials[dead.number].user_attrs[FAIL_ATTR].startswith("worker elsewhere:1 stopped (no heartbeat since ")
    assert trials[live.number].state == RUNNING  # a beating worker elsewhere is left alone
    waiting = [t for t in trials.values() if t.state == WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs[RETRY_ATTR] == dead.number
    assert waiting[0].system_attrs["fixed_params"] == {"fc1": "int8", "fc2": "fp16"}  # measured next


def test_a_re_measurement_lost_with_its_sweeper_is_queued_again_once(shared):
    # A sweeper killed between failing a dead worker's trial and queueing its configuration.
    from mpsearch.search.workers.sweep import requeue_owed

    study = _new_study(shared)
    owed = _running_trial(study, {"fc1": "int8", "fc2": "int8"}, elsewhere(1), time.time())
    done = _running_trial(study, {"fc1": "fp16", "fc2": "int8"}, elsewhere(2), time.time())
    for t in (owed, done):
        t.set_user_attr(SWEPT_ATTR, "sweeper:9")
        study.tell(t, state=FAIL)
    measured = _running_trial(study, {"fc1": "fp16", "fc2": "int8"}, elsewhere(3), time.time())
    study.tell(measured, [1.0, 2.0])  # its configuration was measured meanwhile: nothing owed
    assert requeue_owed(study, older_than_s=60) == []  # its sweeper may still be about to queue it
    views = [optuna.load_study(study_name=shared.name, storage=open_storage(shared.url)) for _ in range(2)]
    assert requeue_owed(views[0], older_than_s=0) == [owed.number]
    assert requeue_owed(views[1], older_than_s=0) == []  # queued once: the waiting retry covers it
    waiting = [t for t in study.get_trials() if t.state == WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs[RETRY_ATTR] == owed.number


def test_a_queued_trial_swept_before_its_taker_named_itself_is_left_and_the_taker_gets_the_next(shared, monkeypatch):
    # A worker paused past --stale-after between taking a queued trial and writing its name on it.
    from mpsearch.search.workers import ask as ask_module

    study = _new_study(shared)
    study.enqueue_trial({"fc1": "int8", "fc2": "fp16"})
    study.enqueue_trial({"fc1": "fp16", "fc2": "int8"})
    take = ask_module._take_queued

    def taken_then_swept_while_paused(s):
        trial_id = take(s)
        if trial_id is not None and s._storage.get_trial(trial_id).number == 0:
            sweeper = optuna.load_study(study_name=shared.name, storage=open_storage(shared.url))
            assert [x.number for x in sweep_stale_trials(sweeper, 0.0, now=time.time() + 1,
                                                         me=elsewhere(7, "sweeper"))] == [0]
        return trial_id

    monkeypatch.setattr(ask_module, "_take_queued", taken_then_swept_while_paused)
    me = elsewhere(3)
    trial = ask_module.ask_owned(study, {**me.attrs(), HEARTBEAT_ATTR: time.time()})
    trials = {t.number: t for t in study.get_trials()}
    assert trial.number == 1 and trials[1].state == RUNNING
    assert trials[1].user_attrs[WORKER_ATTR] == me.attrs()[WORKER_ATTR]
    assert trials[1].system_attrs["fixed_params"] == {"fc1": "fp16", "fc2": "int8"}
    assert trials[0].state == FAIL and WORKER_ATTR not in trials[0].user_attrs
    requeued = [t for t in trials.values() if t.state == WAITING]  # nothing measured, nothing lost
    assert [t.system_attrs["fixed_params"] for t in requeued] == [{"fc1": "int8", "fc2": "fp16"}]
    assert requeued[0].user_attrs[RETRY_ATTR] == 0


def test_a_taken_retry_swept_before_it_was_suggested_is_queued_again_once_for_the_trial_it_is_owed_to(shared):
    from mpsearch.search.workers import ask as ask_module
    from mpsearch.search.workers.sweep import requeue_owed

    study = _new_study(shared)
    owed = _running_trial(study, {"fc1": "int8", "fc2": "int8"}, elsewhere(1), time.time() - 3600)
    assert [x.number for x in sweep_stale_trials(study, 60, me=elsewhere(5, "sweeper"))] == [owed.number]
    assert ask_module._take_queued(study) is not None  # by a worker that dies before naming itself
    swept = sweep_stale_trials(study, 0.0, now=time.time() + 1, me=elsewhere(6, "sweeper"))
    assert [x.requeued for x in swept] == [True]
    waiting = [t for t in study.get_trials() if t.state == WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs[RETRY_ATTR] == owed.number
    assert waiting[0].system_attrs["fixed_params"] == {"fc1": "int8", "fc2": "int8"}
    assert requeue_owed(study, older_than_s=0) == []  # that one queued retry covers the debt


def test_a_vanished_process_of_this_host_is_swept_at_once_despite_a_fresh_heartbeat(shared):
    study = _new_study(shared)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    here = WorkerIdentity(socket.gethostname(), pid, "token-gone", process_namespace(), 12345)
    trial = _running_trial(study, {"fc1": "int8", "fc2": "int8"}, here, time.time())
    swept = sweep_stale_trials(study, 3600)
    assert [x.number for x in swept] == [trial.number] and "process gone" in swept[0].reason


def test_a_heartbeat_keeps_beating_while_a_trial_runs_and_stops_before_the_tell(shared):
    study = _new_study(shared)
    trial = study.ask()
    beat = Heartbeat(trial, 0.05)
    first = study.get_trials()[0].user_attrs[HEARTBEAT_ATTR]
    time.sleep(0.6)
    other = optuna.load_study(study_name=shared.name, storage=open_storage(shared.url))
    assert other.get_trials()[0].user_attrs[HEARTBEAT_ATTR] > first
    assert beat.beats >= 3
    beat.stop()
    study.tell(trial, [1.0, 1.0])
    time.sleep(0.15)  # a beat after the tell would raise in the thread and leave no trace: check the count
    count = beat.beats
    time.sleep(0.15)
    assert beat.beats == count


def test_a_configuration_another_worker_is_measuring_is_not_measured_again(shared):
    from mpsearch.network import Layer, Network
    from mpsearch.objectives import CapacityObjective, LatencyObjective
    from mpsearch.space import SearchSpace
    from tests.fakes import FakeBackend

    study = _new_study(shared)
    net = Network("two", (Layer("fc1", 64, 64, 64), Layer("fc2", 64, 64, 64)))
    space = SearchSpace(net, ("fp16", "int8"))
    other = _running_trial(study, {"fc1": "int8", "fc2": "fp16"}, elsewhere(7), time.time())
    study.enqueue_trial({"fc1": "int8", "fc2": "fp16"})  # this worker's sampler proposes the same
    backend = FakeBackend()
    me = optuna.load_study(study_name=shared.name, storage=open_storage(shared.url),
                           sampler=optuna.samplers.RandomSampler(seed=1))
    outcome = run_search(me, space, [LatencyObjective(backend), CapacityObjective()], Budget(trials=1),
                         progress=False, coordinator=Coordinator(heartbeat_s=0.5, stale_after_s=60))
    assert outcome.collisions >= 1 and "int8,fp16" not in backend.measured and len(backend.measured) == 1
    collided = [t for t in me.get_trials() if COLLISION_ATTR in t.user_attrs]
    assert len(collided) == outcome.collisions and all(t.state == FAIL for t in collided)
    assert all(t.user_attrs[COLLISION_ATTR] == other.number for t in collided)
    assert collided[0].user_attrs[FAIL_ATTR] == f"not measured: trial {other.number} (elsewhere:7) is measuring int8,fp16"


def test_a_worker_killed_holding_the_journal_lock_stalls_neither_its_peer_nor_the_search(tmp_path):
    # `search --workers 2` on its default journal (a relative path), one worker killed while it holds
    # the journal's lock: this once left every later process spinning on the lock forever.
    s = SimpleNamespace(kind="journal", url="journal:studies/j.log", name="j", log=tmp_path / "m.txt", cwd=tmp_path)
    search = spawn(s, "search", "mlp6", "--study-name", "j", "--backend", "roofline", "--no-progress", "--seed", "3",
                   "--workers", "2", "--trials", "16", *OBJECTIVES, *FAST, sleep_s=0.05)
    lock = tmp_path / "studies" / "j.log.lock"
    victim = None
    deadline = time.monotonic() + 120
    while victim is None:
        assert search.poll() is None and time.monotonic() < deadline, search.communicate()
        workers = {pid for pid, _ in measured_log(s, started=True)}
        try:
            holder = os.readlink(lock)
        except OSError:
            continue
        victim = next((pid for pid in workers if f'"pid":{pid},' in holder), None)
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    out, err = search.communicate(timeout=120)
    assert search.returncode == 1 and "(exit -9) failed" in out  # it returns, and says a worker died
    assert time.monotonic() - start < 60
    study = optuna.load_study(study_name="j", storage=open_storage(f"journal:{tmp_path}/studies/j.log"))
    assert sum(1 for t in study.trials if t.state == COMPLETE and is_measurement(t)) >= 16  # the peer finished the budget
    for command in (("resume", "j", "--storage", s.url, "--trials", "1", "--no-progress", *PLUGIN),
                    ("report", "j", "--storage", s.url, "--no-files")):
        finish(spawn(s, *command), timeout=60)


def test_search_with_workers_starts_them_and_summarises_per_worker(tmp_path):
    s = SimpleNamespace(kind="journal", url=f"journal:{tmp_path}/s.log", name="multi", log=tmp_path / "m.txt", cwd=tmp_path)
    out = finish(spawn(s, "search", "mlp6", "--study-name", "multi", "--storage", s.url, "--backend", "roofline",
                       "--no-progress", "--seed", "3", "--workers", "3", "--trials", "30", *OBJECTIVES, *FAST))
    assert "starting 3 workers (roofline backend, CPU processes) on study multi, budget 30 measurements" in out
    assert sum(1 for line in out.splitlines() if "joined study multi" in line) == 3
    assert all(f"[w{i}] worker {i} (" in out for i in range(3))
    assert "duplicate measurements: 0;" in out
    study = load(s)
    measured = [t for t in study.trials if t.state == COMPLETE and is_measurement(t)]
    # The shared budget: workers stop when the study has spent it; racing workers may each start
    # one last measurement, so it can be overshot by at most workers - 1.
    assert 30 <= len(measured) <= 32
    assert len({t.user_attrs[WORKER_ATTR] for t in measured}) == 3
    seeds = sorted(int(line.split(" seed ")[1].split(",")[0]) for line in out.splitlines() if "joined study" in line)
    assert seeds == [3, 4, 5]  # base seed + worker index


def test_the_multi_gpu_script_runs_a_study_with_workers_and_writes_the_per_worker_summary(tmp_path):
    # benchmarks/multi_gpu/run.sh is what the lead runs on a 2-GPU host with the cutlass backend;
    # here everything it uses runs on CPU with the roofline backend.
    import json

    out = tmp_path / "result"
    # Each measurement sleeps 0.3 s (tests.fakes.slow_capacity), so neither worker can spend the whole
    # budget before the other has started: both must show up in the summary.
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKEND": "roofline", "TRIALS": "10", "WORKERS": "2",
           "PYTHON": sys.executable, "STUDY": "mg", "MPSEARCH_FAKE_SLEEP_S": "0.3",
           "EXTRA": " ".join(OBJECTIVES)}
    r = subprocess.run(["bash", str(REPO / "benchmarks/multi_gpu/run.sh"), str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["study"] == "mg" and doc["storage"] == f"journal:{out}/mg.log"
    assert len(doc["workers"]) == 2 and sorted(w["worker_index"] for w in doc["workers"]) == [0, 1]
    assert 10 <= sum(w["measured"] for w in doc["workers"]) <= 11
    assert doc["latency_devices"] == ["NVIDIA H100 80GB HBM3"] and doc["latency_sources"] == ["model"]
    assert doc["backend"]["backend"] == "roofline"
    assert doc["trials"]["duplicate_measurements"] == 0 and doc["pareto_front"]
    md = (out / "summary.md").read_text()
    assert md.startswith("# mg: one study, 2 workers") and "## Trials per worker" in md
    assert "starting 2 workers" in (out / "search.log").read_text()


def test_postgresql_is_reached_through_psycopg3_when_psycopg2_is_not_installed(monkeypatch):
    # The distributed extra installs psycopg 3; SQLAlchemy's plain postgresql:// means psycopg2.
    import importlib.util

    require_server(5432, "PostgreSQL")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    storage = open_storage(PG)
    assert storage.engine.dialect.driver == "psycopg"
    name = f"mpsearch-test-{uuid.uuid4().hex[:12]}"
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "maximize"])
    try:
        study.tell(study.ask(), [1.0, 2.0])
        assert optuna.load_study(study_name=name, storage=open_storage(PG)).trials[0].values == [1.0, 2.0]
    finally:
        optuna.delete_study(study_name=name, storage=storage)
