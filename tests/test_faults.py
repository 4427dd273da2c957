"""The bad-input and fault suite: each case pins the exact behaviour, a one-line error or a failed
(or infeasible) trial with its reason, and that the study goes on with nothing measured lost.

tests/test_cli_search.py and tests/test_search_run.py already pin a plug-in that raises or returns
NaN/inf/a string, unknown presets/formats/objectives, a kernel-check failure and ten failures in a
row; this suite covers the rest. Most cases run in-process (fast); the CLI is driven through
``mpsearch.cli.main`` exactly as the console script does.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings

import optuna
import pytest

from mpsearch.cli import main
from mpsearch.errors import StorageError, UnsupportedConfigError
from mpsearch.formats import check_k_alignment, check_menu
from mpsearch.network import Layer, Network
from mpsearch.objectives import CapacityObjective, LatencyObjective, parse_objective
from mpsearch.search.record import CONFIG_ATTR, FAIL_ATTR
from mpsearch.search.run import Budget, run_search
from mpsearch.search.storage import open_storage
from mpsearch.search.workers import Coordinator, launch_workers
from mpsearch.space import SearchSpace
from tests import fakes
from tests.conftest import REPO

COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)
NET = Network("tiny3", (Layer("fc1", 64, 128, 256), Layer("fc2", 64, 64, 128), Layer("fc3", 64, 32, 64)))
SPACE = SearchSpace(NET, ("fp16", "int8", "fp8_e4m3"))  # 27 configurations


def new_study(storage=None, plugins=0):
    return optuna.create_study(directions=["minimize", "maximize"] + ["maximize"] * plugins, storage=storage,
                               sampler=optuna.samplers.RandomSampler(seed=0))


def search(study, backend, *extra_objectives, trials=8, space=SPACE, coordinator=None):
    objectives = [LatencyObjective(backend), CapacityObjective(), *extra_objectives]
    return run_search(study, space, objectives, Budget(trials=trials), progress=False,
                      device=backend.capabilities.device, coordinator=coordinator)


def reasons(study, state=FAIL):
    return [t.user_attrs.get(FAIL_ATTR, "") for t in study.trials if t.state == state]


def first_layer_int8(config):
    return config["fc1"] == "int8"


TINY3_TOML = 'name = "tiny3"\nbatch = 64\nsizes = [256, 128, 64, 32]\n'


def cli_error(capsys, *args):
    """Run the CLI in-process; (exit code, the stderr lines that are not warnings)."""
    code = main(list(args))
    err = [l for l in capsys.readouterr().err.strip().splitlines() if not l.startswith("warning:")]
    return code, err


# --- faults during a measurement: a failed trial with its reason, and the study goes on ------------

@pytest.mark.parametrize("fault, reason", [
    ("oom", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("nan", "objective latency returned nan; it must return a finite float"),
    ("inf", "objective latency returned inf; it must return a finite float"),
    ("string", "objective latency returned str 'fast'; it must return a float"),
    ("bug", "ZeroDivisionError: division by zero"),
])
def test_a_backend_fault_fails_only_the_affected_trials_with_the_reason(fault, reason):
    study = new_study()
    backend = fakes.FakeBackend(fault=fault, when=first_layer_int8)
    outcome = search(study, backend, trials=12)
    failed = [t for t in study.trials if t.state == FAIL]
    complete = [t for t in study.trials if t.state == COMPLETE]
    assert failed and complete, "the fault must hit some trials and the study must go on"
    assert all(t.user_attrs[CONFIG_ATTR].startswith("int8,") for t in failed)
    assert all(reason in t.user_attrs[FAIL_ATTR] for t in failed)
    assert not any(t.user_attrs[CONFIG_ATTR].startswith("int8,") for t in complete)
    assert outcome.failed == len(failed) and outcome.measured == 12


def test_gpu_out_of_memory_is_not_mistaken_for_an_unsupported_configuration():
    # OOM depends on what else holds GPU memory: the trial fails (a sampler may try it again),
    # it is not marked infeasible (which would ban the configuration for good).
    study = new_study()
    search(study, fakes.FakeBackend(fault="oom"), trials=3)
    assert [t.state for t in study.trials] == [FAIL] * 3
    assert all(not t.constraints for t in study.trials)


def test_a_plugin_that_hangs_past_the_timeout_fails_its_trial_and_the_next_trials_run():
    study = new_study(plugins=1)
    hang = parse_objective("stuck=tests.fakes:hangs_on_int8_first_layer:maximize")
    coordinator = Coordinator(heartbeat_s=0.05, stale_after_s=5, objective_timeout_s=0.3)
    backend = fakes.FakeBackend()
    search(study, backend, hang, trials=8, coordinator=coordinator)
    failed = reasons(study)
    assert failed, "the random sampler picks int8 for fc1 within 8 trials at seed 0"
    assert all("objective stuck (tests.fakes:hangs_on_int8_first_layer) did not return within 0.3 s" in r
               and "raise --objective-timeout" in r for r in failed)
    assert len([t for t in study.trials if t.state == COMPLETE]) == 8 - len(failed)


@pytest.mark.parametrize("plugin, reason", [
    ("tests.fakes:exits_on_int8_first_layer", "objective quit (tests.fakes:exits_on_int8_first_layer) called sys.exit(3)"),
    ("tests.fakes:interrupts_on_int8_first_layer",
     "objective quit (tests.fakes:interrupts_on_int8_first_layer) raised KeyboardInterrupt"),
])
def test_a_plugin_that_calls_sys_exit_or_raises_keyboard_interrupt_fails_only_its_trial(capsys, tmp_path, monkeypatch,
                                                                                         plugin, reason):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny3.toml").write_text(TINY3_TOML)
    code, err = cli_error(capsys, "search", "tiny3.toml", "--trials", "8", "--seed", "0", "--backend", "roofline",
                          "--no-progress", "--objective", "latency", "--objective", f"quit={plugin}")
    assert code == 0 and err == []  # not exit 3, not "interrupted" (130)
    study = optuna.load_study(study_name="tiny3", storage="sqlite:///studies/tiny3.db")
    failed = [t for t in study.trials if t.state == FAIL]
    assert failed and len([t for t in study.trials if t.state == COMPLETE]) + len(failed) == len(study.trials)
    assert all(t.user_attrs[CONFIG_ATTR].startswith("int8,") and t.user_attrs[FAIL_ATTR].startswith(reason)
               for t in failed)


def test_a_plugin_whose_process_crashes_fails_its_trial_and_the_next_trial_gets_a_new_process():
    study = new_study(plugins=1)
    crash = parse_objective("boom=tests.fakes:crashes_on_int8_first_layer:maximize")
    search(study, fakes.FakeBackend(), crash, trials=8)
    failed = reasons(study)
    assert failed and all(r.startswith("objective boom (tests.fakes:crashes_on_int8_first_layer): its process was "
                                       "killed by SIGSEGV on int8,") for r in failed)
    assert len([t for t in study.trials if t.state == COMPLETE]) == 8 - len(failed)
    # One process for the study, and one more after each crash (a trial after the last crash started it).
    assert len(failed) <= crash._process.started - 1 <= len(failed) + 1
    crash.close()


def test_a_plugin_that_hangs_is_killed_at_its_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("MPSEARCH_FAKE_PID_LOG", str(tmp_path / "pids"))
    study = new_study(plugins=1)
    hang = parse_objective("stuck=tests.fakes:records_pid_then_hangs_on_int8_first_layer:maximize")
    coordinator = Coordinator(heartbeat_s=0.05, stale_after_s=5, objective_timeout_s=0.3)
    search(study, fakes.FakeBackend(), hang, trials=6, coordinator=coordinator)
    hang.close()
    pids = {int(p) for p in (tmp_path / "pids").read_text().split()}
    assert reasons(study) and len(pids) >= 2  # hung at least once, and a new process took over
    for pid in pids:  # every plug-in process is gone, none left hanging
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ctrl_c_in_the_terminal_means_interrupted_and_stops_the_plugin_process(tmp_path):
    # A terminal's Ctrl-C sends SIGINT to its whole foreground process group.
    pids = tmp_path / "pids"
    (tmp_path / "one.toml").write_text('name = "one"\nbatch = 8\nsizes = [64, 64]\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpsearch.cli", "search", "one.toml", "--trials", "50", "--backend", "roofline",
         "--formats", "int8", "--no-progress", "--objective", "latency",
         "--objective", "tests.fakes:records_pid_then_hangs_on_int8_first_layer"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "MPSEARCH_FAKE_PID_LOG": str(pids)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal starts it
    while not pids.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted: every finished trial is stored; resume with `mpsearch resume NAME`"]
    with pytest.raises(ProcessLookupError):
        os.kill(int(pids.read_text().split()[0]), 0)


@pytest.mark.parametrize("plugin, reason", [
    ("tests.fakes:returns_none", "returned NoneType None; it must return a float"),
    ("tests.fakes:returns_bool", "returned bool True; it must return a float"),
])
def test_a_plugin_returning_a_non_number_fails_the_trial(plugin, reason):
    study = new_study(plugins=1)
    search(study, fakes.FakeBackend(), parse_objective(plugin), trials=2)
    assert [t.state for t in study.trials] == [FAIL, FAIL]
    assert all(reason in r for r in reasons(study))


def test_a_plugin_returning_a_numpy_float_is_accepted():
    study = new_study(plugins=1)
    search(study, fakes.FakeBackend(), parse_objective("tests.fakes:returns_numpy_float32"), trials=2)
    assert [t.state for t in study.trials] == [COMPLETE, COMPLETE]
    assert all(t.values[2] == 0.5 for t in study.trials)


def test_a_failed_trial_keeps_every_earlier_measurement():
    # Faults on some trials must not disturb the trials already told.
    study = new_study()
    search(study, fakes.FakeBackend(), trials=5)
    before = {t.number: t.values for t in study.trials}
    search(study, fakes.FakeBackend(fault="oom"), trials=3)
    after = {t.number: t.values for t in study.trials if t.number in before}
    assert after == before


# --- impossible dimensions: format alignment ------------------------------------------------------

@pytest.mark.parametrize("k, fmt, message", [
    (100, "int4", "layer fc1 cannot run in int4: its k=100 is not a multiple of 32, which int4 kernels need "
                  "(operand rows are loaded 32 elements at a time); keep fc1 out of int4 or pad k to 128"),
    (24, "fp8", "layer fc1 cannot run in fp8_e4m3: its k=24 is not a multiple of 16"),
])
def test_a_k_the_format_cannot_load_is_refused_naming_layer_dimension_and_multiple(k, fmt, message):
    with pytest.raises(UnsupportedConfigError) as err:
        check_k_alignment("fc1", k, fmt)
    assert message in str(err.value)


@pytest.mark.parametrize("k, fmt", [(100, "fp16"), (100, "int8"), (96, "int4"), (48, "fp8_e4m3")])
def test_a_k_the_format_can_load_passes(k, fmt):
    check_k_alignment("fc1", k, fmt)


def test_roofline_marks_an_int4_config_with_a_misaligned_k_infeasible_and_prices_the_rest():
    from mpsearch.backends.roofline import RooflineBackend

    net = Network("odd", (Layer("fc1", 64, 128, 100), Layer("fc2", 64, 64, 128)))
    space = SearchSpace(net, ("fp16", "int4"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = new_study()
        search(study, RooflineBackend("a100"), trials=4, space=space)
    by_config = {t.user_attrs[CONFIG_ATTR]: t for t in study.trials if "repeat_of" not in t.user_attrs}
    assert set(by_config) == {"fp16,fp16", "fp16,int4", "int4,fp16", "int4,int4"}
    for key, t in by_config.items():
        infeasible = key.startswith("int4")
        assert (t.constraints.get("unsupported") == 1.0) == infeasible, key
        if infeasible:
            assert "layer fc1 cannot run in int4: its k=100 is not a multiple of 32" in t.user_attrs[FAIL_ATTR]


# --- formats the device cannot run -------------------------------------------------------------------

def test_a_format_on_an_unknown_architecture_is_refused_with_what_runs_there():
    with pytest.raises(UnsupportedConfigError, match=r"format fp16 cannot run on sm_75: remove it from --formats"):
        check_menu(("fp16",), 75)


def test_an_emulated_format_is_allowed_with_a_warning():
    with pytest.warns(UserWarning, match=r"int4 have no tensor-core path on sm_90 and run emulated"):
        assert check_menu(("fp16", "int4"), 90) == ("int4",)


# --- malformed specs and options (one line, exit 2) ------------------------------------------------

@pytest.mark.parametrize("toml, message", [
    ('name = "x"\nbatch = 8\nsizes = [64, 0, 32]\n', "x.toml: sizes[1] must be an integer in [1, 16777216], got 0"),
    ('name = "x"\nsizes = [64, 32]\n', "x.toml: batch is required with sizes"),
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "a"\nk = 64\n', "x.toml: layers[0] (a).n is required, got none"),
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "a"\nk = "64"\nn = 8\n', "layers[0] (a).k must be an integer"),
    ('name = "x"\nbatch = 8\nsizes = [64, 32, 16]\n[groups]\nab = ["fc1", "fc9"]\n', "groups.ab names unknown layer 'fc9'"),
    ('name = "x"\nbatch = 8\nsizes = [64, 32]\nlayer = 3\n', "x.toml: unknown field 'layer'"),
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "a"\nk = 64\nn = 64\n[[layers]]\nname = "b"\nk = 64\nn = 64\n'
     '[groups]\ng1 = ["a", "a"]\n', "x.toml: groups.g1 lists layer 'a' twice: list each layer once"),
    # Names that would corrupt the report's tables (one column per layer and per objective):
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "trial"\nk = 64\nn = 64\n',
     "x.toml: layers[0]: layer name 'trial' is reserved (reports have columns trial, state, config, "),
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "config"\nk = 64\nn = 64\n', "layer name 'config' is reserved"),
    ('name = "x"\nbatch = 8\n[[layers]]\nname = "latency"\nk = 64\nn = 64\n', "layer name 'latency' is reserved"),
])
def test_a_malformed_network_spec_is_one_line_naming_the_field(capsys, tmp_path, monkeypatch, toml, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_text(toml)
    code, err = cli_error(capsys, "search", "x.toml", "--trials", "1", "--backend", "roofline", "--no-progress")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "studies").exists() or not list((tmp_path / "studies").iterdir())


def test_a_binary_network_file_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.toml").write_bytes(b"\xff\xfe\x00name = 1\n")
    code, err = cli_error(capsys, "search", "x.toml", "--trials", "1", "--backend", "roofline", "--no-progress")
    assert code == 2 and err == ["error: x.toml: not a UTF-8 text file (byte 0xff at offset 0); a network spec is a "
                                 "TOML text file"]


@pytest.mark.parametrize("seed", ["-1", str(2**70), str(2**32)])
def test_a_seed_numpy_cannot_take_is_one_line(capsys, tmp_path, monkeypatch, seed):
    monkeypatch.chdir(tmp_path)
    code, err = cli_error(capsys, "search", "mlp6", "--trials", "1", "--seed", seed, "--backend", "roofline", "--no-progress")
    assert code == 2 and err == [f"error: --seed must be an integer in [0, 4294967295], got {seed}"]


def test_a_study_seeded_near_the_top_of_the_range_can_be_resumed(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (("search", "mlp6", "--trials", "3", "--seed", "4294967294", "--backend", "roofline"),
                 ("resume", "mlp6", "--trials", "2")):  # the resumed seed (+ trials stored) wraps around
        code, err = cli_error(capsys, *args, "--no-progress")
        assert code == 0 and err == [], err


def test_an_empty_format_menu_is_refused_not_replaced_by_the_default(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = cli_error(capsys, "search", "mlp6", "--trials", "1", "--formats", "", "--backend", "roofline",
                          "--no-progress")
    assert code == 2 and err == ["error: the format menu is empty: give at least one format, e.g. --formats fp16,int8"]


def test_a_search_in_which_every_trial_failed_exits_1_with_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = cli_error(capsys, "search", "mlp6", "--trials", "2", "--backend", "roofline", "--no-progress",
                          "--objective", "latency", "--objective", "tests.plugins:returns_nan")
    assert code == 1 and err == ["error: no Pareto front: none of the 2 trials of study mlp6 completed with a feasible "
                                 "configuration (2 failed; last reason: objective returns_nan returned nan; it must "
                                 "return a finite float)"]


def test_report_out_naming_a_file_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_error(capsys, "search", "mlp6", "--trials", "2", "--backend", "roofline", "--no-progress")[0] == 0
    (tmp_path / "front.png").write_bytes(b"an image")
    code, err = cli_error(capsys, "report", "mlp6", "--out", "front.png")
    assert code == 2 and err == ["error: --out front.png is a file: give a folder (a report writes several files into it)"]
    assert (tmp_path / "front.png").read_bytes() == b"an image"


def test_a_plugin_module_that_raises_on_import_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_proxy.py").write_text("raise RuntimeError('needs a GPU at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = cli_error(capsys, "search", "mlp6", "--trials", "1", "--backend", "roofline", "--no-progress",
                          "--objective", "latency", "--objective", "broken_proxy:acc")
    assert code == 2 and err == ["error: objective 'broken_proxy:acc': importing 'broken_proxy' raised "
                                 "RuntimeError: needs a GPU at import"]
    sys.modules.pop("broken_proxy", None)


@pytest.mark.parametrize("spec, message", [
    ("tests.fakes:FAULTS", "'FAULTS' is a tuple, not a callable"),
    ("tests.fakes:slow_capacity:upward", "direction must be minimize or maximize, got 'upward'"),
    ("tests.fakes", "is not 'latency', 'capacity' or 'package.module:function[:minimize|maximize]'"),
    # Names that would corrupt the report's tables (one column per layer and per objective):
    ("trial=tests.plugins:constant_one", "objective name 'trial' is reserved (reports have columns trial, state, config"),
    ("config=tests.plugins:constant_one", "objective name 'config' is reserved"),
    ("latency=tests.plugins:constant_one", "'latency' is a built-in objective's name; name the plug-in otherwise"),
    ("fc1=tests.plugins:constant_one", "objective name 'fc1' is also a layer of network 'mlp6'"),
])
def test_a_malformed_plugin_objective_is_one_line(capsys, tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    code, err = cli_error(capsys, "search", "mlp6", "--trials", "1", "--backend", "roofline", "--no-progress",
                          "--objective", "latency", "--objective", spec)
    assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("args, message", [
    (("--workers", "2", "--storage", "sqlite:///s.db", "--trials", "4"),
     "storage sqlite:///s.db is SQLite, which takes one process at a time, but 2 workers were asked for: use --storage journal:"),
    (("--workers", "3"), "--workers 3 shares the study's budget between workers: give --trials N (the total)"),
    (("--workers", "-1", "--trials", "2"), "--workers must be an integer >= 0, got -1"),
    (("--workers", "2", "--trials", "9", "--patience", "3"), "--patience and --target-hv stop one search loop and "
                                                             "cannot be shared by --workers 2"),
    (("--trials", "2", "--heartbeat", "10", "--stale-after", "15"),
     "--stale-after must be at least twice --heartbeat"),
])
def test_bad_worker_options_are_one_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = cli_error(capsys, "search", "mlp6", "--backend", "roofline", "--no-progress", *args)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_more_pinned_workers_than_visible_gpus_is_refused(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(UnsupportedConfigError, match=r"--workers 2 needs 2 GPUs \(one per worker\) but 1 are visible "
                                                      r"\(CUDA_VISIBLE_DEVICES=0\): use --workers 1"):
        launch_workers(2, ["x"], pin_gpus=True)


def test_each_launched_worker_is_pinned_to_its_own_visible_gpu(monkeypatch, capsys):
    from mpsearch.search.workers import wait_workers

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    show = [sys.executable, "-c", "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES'], "
                                  "os.environ['CUDA_DEVICE_ORDER'], sys.argv[1:])"]
    workers = wait_workers(launch_workers(2, ["study"], pin_gpus=True, command=show))
    assert [w.returncode for w in workers] == [0, 0] and [w.gpu for w in workers] == ["2", "3"]
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == ["[w0] 2 PCI_BUS_ID ['study', '--worker-index', '0']",
                           "[w1] 3 PCI_BUS_ID ['study', '--worker-index', '1']"]


def test_a_pinned_worker_records_the_gpu_it_runs_on(monkeypatch):
    from mpsearch.search.workers import identity as workers

    monkeypatch.setattr(workers, "_gpu_bus_ids", lambda: ["0000:18:00.0", "0000:2a:00.0"])
    monkeypatch.setattr(workers.socket, "gethostname", lambda: "gpu-host-7")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert workers.gpu_identity() == "gpu-host-7 GPU 1 (0000:2a:00.0)"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert workers.visible_gpus() == ["0", "1"]
    assert workers.gpu_identity() == "gpu-host-7 all GPUs (2)"


# --- storages: wrong, unreachable, locked, torn -----------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("journal:/nonexistent/dir/s.log", "storage journal:/nonexistent/dir/s.log: folder /nonexistent/dir does not exist"),
    ("sqlite://s.db", "a SQLite URL has three slashes: sqlite:///relative.db or sqlite:////abs/path.db"),
    ("redis://127.0.0.1:1/0", "storage redis://127.0.0.1:1/0 cannot be opened: Error 111 connecting to 127.0.0.1:1"),
    ("postgresql://root:secret@127.0.0.1:1/test", "storage postgresql://root:***@127.0.0.1:1/test cannot be opened"),
    ("mongodb://127.0.0.1/x", "storage mongodb://127.0.0.1/x cannot be opened: Can't load plugin: sqlalchemy.dialects:mongodb"),
])
def test_a_wrong_or_unreachable_storage_is_one_line(url, message):
    with pytest.raises(StorageError) as err:
        open_storage(url)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "secret" not in text


def test_a_server_that_accepts_but_never_answers_is_one_line_within_the_time_limit(monkeypatch):
    # A hung server (stopped, or behind a broken network): the connection opens, no reply ever comes.
    import threading

    from mpsearch.search import storage as storage_module

    monkeypatch.setattr(storage_module, "STORAGE_STUCK_S", 1.0)
    monkeypatch.setattr(storage_module, "CONNECT_TIMEOUT_S", 2)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()) for _ in range(8)], daemon=True).start()
    port = silent.getsockname()[1]
    try:
        for url, limit in ((f"redis://127.0.0.1:{port}/0", 1.0), (f"postgresql://root@127.0.0.1:{port}/test", 2.0)):
            start = time.monotonic()
            with pytest.raises(StorageError) as err:
                open_storage(url)
            assert limit <= time.monotonic() - start < limit + 10
            assert str(err.value).startswith(f"storage {url} cannot be opened: ") and "\n" not in str(err.value)
    finally:
        silent.close()


@pytest.mark.distributed
def test_a_postgresql_lock_held_past_the_time_limit_is_one_line(monkeypatch):
    # A worker stopped (SIGSTOP) inside a transaction keeps its row locks for as long as it is stopped.
    import uuid

    import psycopg

    from mpsearch.api import run_guarded
    from mpsearch.search import storage as storage_module

    monkeypatch.setattr(storage_module, "STORAGE_STUCK_S", 1.0)
    url = "postgresql://postgres@127.0.0.1:5432/test"
    name = f"mpsearch-stuck-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(study_name=name, storage=open_storage(url), directions=["minimize", "maximize"])
    trial = study.ask()
    holder = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        holder.execute("SELECT * FROM trials WHERE trial_id = %s FOR UPDATE", (trial._trial_id,))
        start = time.monotonic()
        with pytest.raises(StorageError) as err:
            run_guarded(url, lambda: study.tell(trial, [1.0, 2.0]))
        assert time.monotonic() - start < 10
        assert str(err.value).startswith(f"storage {url} failed during the search: ") and "lock" in str(err.value)
    finally:
        holder.rollback()
        holder.close()
        optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_journal_path_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(StorageError, match=r"is a folder; give a file name, e.g. journal:"):
        open_storage(f"journal:{tmp_path}")


def test_a_locked_sqlite_database_is_one_line_and_keeps_what_was_stored(tmp_path, monkeypatch):
    from mpsearch.api import run_guarded
    from mpsearch.search import storage as storage_module

    monkeypatch.setattr(storage_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    url = f"sqlite:///{tmp_path}/s.db"
    study = new_study(open_storage(url))
    search(study, fakes.FakeBackend(), trials=3)
    holder = sqlite3.connect(f"{tmp_path}/s.db")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, as far as SQLite can tell
    try:
        with pytest.raises(StorageError) as err:
            run_guarded(url, lambda: search(study, fakes.FakeBackend(), trials=3))
        assert str(err.value).startswith(f"storage {url} is locked by another process (SQLite takes one writer at a time)")
        assert "continue with `mpsearch resume`" in str(err.value)
        with pytest.raises(StorageError, match="is locked by another process"):
            open_storage(url)
    finally:
        holder.rollback()
        holder.close()
    reloaded = optuna.load_study(study_name=study.study_name, storage=open_storage(url))
    assert len([t for t in reloaded.trials if t.state == COMPLETE]) == 3


def test_a_torn_journal_line_is_cut_at_the_next_append_and_the_study_continues(tmp_path):
    path = tmp_path / "s.log"
    study = new_study(open_storage(f"journal:{path}"))
    search(study, fakes.FakeBackend(), trials=4)
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 6, "worker_id": "x", "trial_id"')  # a writer killed mid-line
    torn = path.read_bytes()
    storage = open_storage(f"journal:{path}")
    reloaded = optuna.load_study(study_name=study.study_name, storage=storage)
    before = [t for t in reloaded.trials if t.state == COMPLETE and "repeat_of" not in t.user_attrs]
    assert len(before) == 4
    assert path.read_bytes() == torn  # opening and reading write nothing
    search(reloaded, fakes.FakeBackend(), trials=2)  # the first append cuts the torn line, then lands on a clean one
    assert (tmp_path / "s.log.torn").read_bytes().startswith(b'{"op_code": 6')
    again = optuna.load_study(study_name=study.study_name, storage=open_storage(f"journal:{path}"))
    assert len([t for t in again.trials if t.state == COMPLETE and "repeat_of" not in t.user_attrs]) == 6


def _append_one(path):
    """One journal append by this process (what every trial write is), timed in wall and CPU seconds."""
    storage = open_storage(f"journal:{path}")
    wall, cpu = time.monotonic(), time.process_time()
    optuna.create_study(storage=storage)
    return time.monotonic() - wall, time.process_time() - cpu


def test_a_lock_left_by_a_writer_that_names_no_holder_is_broken_after_the_grace_period_without_spinning(
        tmp_path, monkeypatch):
    # What Optuna's own lock (used by earlier mpsearch) leaves when its holder is killed mid-append:
    # a symlink to the journal's *relative* path, which dangles. Waiting on it spun at 100% CPU forever.
    from mpsearch.search import journal

    monkeypatch.setattr(journal, "JOURNAL_LOCK_GRACE_S", 2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "s.log.lock").symlink_to("studies/s.log")
    with pytest.warns(UserWarning, match=r"journal .*s.log: broke a lock left by an unnamed holder \(unchanged for more than 2 s\)"):
        wall, cpu = _append_one("studies/s.log")
    assert 2 <= wall < 10 and cpu < 0.5 * wall  # it slept while it waited
    assert not (tmp_path / "studies" / "s.log.lock").exists()


def test_a_lock_whose_holder_process_is_gone_is_broken_at_once(tmp_path):
    path = tmp_path / "s.log"
    killed = subprocess.run(  # takes the lock the way every mpsearch process does, then dies holding it
        [sys.executable, "-c", f"import os; from mpsearch.search.journal import JournalLock; "
                               f"JournalLock({str(path)!r}).acquire(); print(os.getpid()); os._exit(9)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == 9 and os.path.lexists(f"{path}.lock")
    with pytest.warns(UserWarning, match=rf"broke a lock left by {socket.gethostname()}:{killed.stdout.strip()} "
                                         rf"\({socket.gethostname()}:{killed.stdout.strip()} no longer exists\)"):
        wall, _ = _append_one(path)
    assert wall < 2


def test_a_paused_holder_whose_lock_was_broken_leaves_the_new_holders_lock_alone(tmp_path):
    from mpsearch.search.journal import JournalLock

    paused, waiting = JournalLock(tmp_path / "s.log"), JournalLock(tmp_path / "s.log", grace_s=0.3)
    paused.acquire()
    waiting.acquire()  # the holder is alive (this very process) but its lock did not change for 0.3 s
    held = os.readlink(f"{tmp_path}/s.log.lock")
    with pytest.warns(UserWarning, match=r"this process's lock on journal .*s.log was broken while it held it"):
        paused.release()  # it wakes up after the lock was broken and taken again
    assert os.readlink(f"{tmp_path}/s.log.lock") == held
    waiting.release()
    assert not os.path.lexists(f"{tmp_path}/s.log.lock")


def test_a_journal_whose_lock_never_frees_is_reported_in_one_line_within_the_time_limit(tmp_path):
    from mpsearch.search.journal import JournalLock

    path = tmp_path / "s.log"
    # A live process that holds the lock and keeps renewing it (a new symlink renamed over it): it is
    # never unchanged long enough to be broken, and never free.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import os, time\nfrom mpsearch.search.journal import JournalLock\n"
                               f"lock = JournalLock({str(path)!r})\nlock.acquire()\nwhile True:\n"
                               f"    time.sleep(0.2); os.symlink(os.readlink(lock.lock_file), lock.lock_file + '.new')\n"
                               f"    os.rename(lock.lock_file + '.new', lock.lock_file)"],
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while not os.path.lexists(f"{path}.lock"):
            time.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(StorageError) as err:
            JournalLock(path, grace_s=1, stuck_after_s=2).acquire()
        assert 2 <= time.monotonic() - start < 5
        assert str(err.value) == (f"storage journal:{path} is stuck: its lock {path}.lock was not free for 2 s (held "
                                  f"by {socket.gethostname()}:{holder.pid}); if no process uses this journal, delete "
                                  f"{path}.lock")
    finally:
        holder.kill()
        holder.wait()


# --- workers: refusal, budget, tells that lost a race ---------------------------------------------------

def _created_study(capsys, name, *extra):
    code = main(["search", "mlp6", "--study-name", name, "--backend", "roofline", "--no-progress",
                 "--storage", "journal:s.log", *extra])
    capsys.readouterr()
    assert code == 0


def test_a_worker_on_another_gpu_model_is_refused_naming_both(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _created_study(capsys, "w", "--workers", "0", "--trials", "5")
    code, err = cli_error(capsys, "worker", "w", "--storage", "journal:s.log", "--device", "h200", "--no-progress")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: worker refused: study 'w' is measured on NVIDIA H100 80GB HBM3, but this "
                             "worker's backend roofline gives NVIDIA H200")
    study = optuna.load_study(study_name="w", storage=open_storage("journal:s.log"))
    assert study.trials == []  # a refused worker measured nothing


def test_a_worker_on_a_study_without_a_budget_needs_its_own(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _created_study(capsys, "nb", "--trials", "2")
    code, err = cli_error(capsys, "worker", "nb", "--storage", "journal:s.log", "--no-progress")
    assert code == 2 and err == ["error: study 'nb' has no shared budget (it was not started with `mpsearch search "
                                 "--trials N --workers ...`): give this worker --trials N and/or --timeout SECONDS"]


def test_a_worker_for_a_missing_study_lists_what_the_storage_holds(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _created_study(capsys, "here", "--trials", "1")
    code, err = cli_error(capsys, "worker", "nothere", "--storage", "journal:s.log", "--trials", "1")
    assert code == 2 and err == ["error: no study 'nothere' in journal:s.log (it holds here); give --storage or "
                                 "start one with `mpsearch search`"]


def test_a_measurement_whose_trial_was_swept_meanwhile_is_reported_not_crashed(capsys):
    # A worker paused longer than --stale-after is declared dead; when it wakes, its tell fails.
    # The loop says so and goes on (the configuration was queued again by the sweeper).
    study = new_study()

    class SweptDuringMeasurement(fakes.FakeBackend):
        def measure(self, network, config):
            running = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
            study.tell(running[0].number, state=FAIL)  # what another worker's sweep does
            return super().measure(network, config)

    outcome = search(study, SweptDuringMeasurement(), trials=2)
    assert outcome.lost_tells == 2 and outcome.measured == 2
    assert "was failed by another worker's sweep while measured here" in capsys.readouterr().out


def test_a_trial_swept_before_its_claim_is_dropped_with_a_note_and_the_worker_goes_on(capsys):
    # A worker paused right after asking (before it names its configuration) for longer than
    # --stale-after: a sweep fails the trial; every later write onto it fails, none may crash the worker.
    study = new_study()
    swept = []

    class SweptAfterAsk(SearchSpace):
        def suggest(self, trial):
            if not swept:
                swept.append(trial.number)
                study.tell(trial.number, state=FAIL)  # another worker's sweep
            return super().suggest(trial)

    outcome = search(study, fakes.FakeBackend(), trials=3, space=SweptAfterAsk(NET, SPACE.menu))
    assert outcome.lost_tells == 1 and outcome.measured == 3
    assert [t.state for t in study.trials if t.number != swept[0]] == [COMPLETE] * 3
    assert f"trial {swept[0]} was failed by another worker's sweep while measured here" in capsys.readouterr().out


def test_a_trial_is_created_owned_by_its_worker(tmp_path):
    # A worker killed right after asking must leave a trial that names it, in the very write that
    # created it: the next worker can then tell at once that its owner is gone.
    import json

    from mpsearch.search.workers.identity import WORKER_TOKEN_ATTR, this_worker

    path = tmp_path / "s.log"
    study = new_study(open_storage(f"journal:{path}"))
    trial = Coordinator().ask(study)
    created = [json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["op_code"] == 4]
    assert len(created) == 1 and created[0]["user_attrs"][WORKER_TOKEN_ATTR] == this_worker().token
    assert created[0]["user_attrs"]["heartbeat"] > 0 and trial.number == 0


def test_a_dead_workers_trial_left_right_after_ask_is_recovered_by_the_next_run_at_once(tmp_path):
    url = f"journal:{tmp_path}/s.log"
    study = new_study(open_storage(url))
    asked = subprocess.run(  # a worker killed between ask and its claim: nothing measured, owner recorded
        [sys.executable, "-c", f"import os, optuna\nfrom mpsearch.search.storage import open_storage\n"
                               f"from mpsearch.search.workers import Coordinator\n"
                               f"study = optuna.load_study(study_name={study.study_name!r}, storage=open_storage({url!r}))\n"
                               f"Coordinator().ask(study)\nos._exit(9)"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert asked.returncode == 9, asked.stderr
    assert [t.state for t in study.get_trials()] == [RUNNING]
    search(study, fakes.FakeBackend(), trials=1)
    first = study.get_trials()[0]
    assert first.state == FAIL and "process gone" in first.user_attrs[FAIL_ATTR]


def test_the_default_sweep_finds_a_silent_worker_within_half_a_minute():
    from mpsearch.search.record import WORKER_ATTR
    from mpsearch.search.workers import HEARTBEAT_ATTR
    from mpsearch.search.workers.identity import WorkerIdentity

    study = new_study()
    far_away = WorkerIdentity("elsewhere", 7, "remote-token", "another-boot/pid:[1]", 1)
    for age in (40, 20):
        trial = study.ask()
        for key, value in {**far_away.attrs(), HEARTBEAT_ATTR: time.time() - age}.items():
            trial.set_user_attr(key, value)
    swept = Coordinator().sweep(study, force=True)  # the defaults: what a user gets
    assert [s.number for s in swept] == [0]  # silent for 40 s: dead; for 20 s: may be alive
    assert study.trials[0].user_attrs[FAIL_ATTR].startswith("worker elsewhere:7 stopped (no heartbeat since ")
    assert study.trials[1].state == RUNNING and study.trials[1].user_attrs[WORKER_ATTR] == "elsewhere:7"


def test_a_worker_busy_measuring_still_sweeps_a_dead_workers_trial():
    from mpsearch.search.workers import HEARTBEAT_ATTR, SWEPT_ATTR
    from mpsearch.search.workers.identity import WorkerIdentity

    study = new_study()
    dead = study.ask()
    for key, value in {**WorkerIdentity("elsewhere", 7, "dead-token", None, None).attrs(),
                       HEARTBEAT_ATTR: time.time()}.items():
        dead.set_user_attr(key, value)
    # One measurement of 2 s; the dead worker's last beat goes stale 0.5 s into it.
    coordinator = Coordinator(heartbeat_s=0.2, stale_after_s=0.5)
    search(study, fakes.FakeBackend(sleep_s=2.0), trials=1, coordinator=coordinator)
    swept, mine = study.trials[0], study.trials[-1]
    assert swept.state == FAIL and SWEPT_ATTR in swept.user_attrs
    assert swept.datetime_complete < mine.datetime_complete  # swept during the measurement, not after it


def test_a_shared_budget_is_completed_when_the_worker_of_its_last_measurement_dies():
    # The study needs 3 measurements; 2 are done and the 3rd is in flight on a worker that then dies.
    # A live worker must not stop at "budget reached" (the study would end one short): it waits,
    # sweeps the dead worker's trial, and measures that configuration itself.
    from mpsearch.search.workers import HEARTBEAT_ATTR, MEASURE_START_ATTR, RETRY_ATTR
    from mpsearch.search.workers.identity import WorkerIdentity

    study = new_study()
    search(study, fakes.FakeBackend(), trials=2)
    dying = study.ask()
    SPACE.suggest(dying)
    for key, value in {**WorkerIdentity("elsewhere", 7, "dying-token", None, None).attrs(), HEARTBEAT_ATTR: time.time(),
                       CONFIG_ATTR: "int8,int8,int8", MEASURE_START_ATTR: time.time()}.items():
        dying.set_user_attr(key, value)
    coordinator = Coordinator(heartbeat_s=0.2, stale_after_s=0.6, study_budget=3)
    outcome = search(study, fakes.FakeBackend(), trials=10, coordinator=coordinator)
    assert outcome.stop_reason == "study budget reached (3 measurements across all workers)"
    assert outcome.measured == 1
    retried = [t for t in study.trials if t.user_attrs.get(RETRY_ATTR) == dying.number]
    assert len(retried) == 1 and retried[0].state == COMPLETE


@pytest.mark.distributed
def test_a_storage_server_lost_mid_search_is_one_line_and_keeps_what_was_stored(tmp_path):
    import socket
    import uuid

    import redis

    from mpsearch.api import run_guarded

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=3).close()
    except OSError as err:
        pytest.fail(f"Redis on 127.0.0.1:6379 is unreachable ({err}); this test needs the real server", pytrace=False)
    prefix = f"mpsearch-fault-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    storage = open_storage(url)
    study = new_study(storage)
    try:
        search(study, fakes.FakeBackend(), trials=3)
        healthy = storage._backend._redis
        storage._backend._redis = redis.Redis(host="127.0.0.1", port=1)  # the server goes away
        with pytest.raises(StorageError) as err:
            run_guarded(url, lambda: search(study, fakes.FakeBackend(), trials=3))
        text = str(err.value)
        assert text.startswith(f"storage {url} failed during the search: Error 111 connecting to 127.0.0.1:1")
        assert "continue with `mpsearch resume`" in text and "\n" not in text
        storage._backend._redis = healthy
        reloaded = optuna.load_study(study_name=study.study_name, storage=open_storage(url))
        assert len([t for t in reloaded.trials if t.state == COMPLETE]) == 3
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
