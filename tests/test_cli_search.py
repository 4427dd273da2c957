"""The search / resume / enumerate commands, run as a user runs them: in a subprocess."""

import optuna
import pytest

from mpsearch.search.record import read_spec

ROOF = ("--backend", "roofline", "--no-progress")


def load(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/studies/{name}.db")


def test_search_stores_a_study_with_its_spec_and_prints_the_front(cli, tmp_path):
    r = cli("search", "mlp6", "--trials", "12", "--seed", "3", *ROOF)
    assert r.returncode == 0, r.stderr
    assert "Pareto front of study mlp6" in r.stdout
    assert "modelled for NVIDIA H100" in r.stdout
    study = load(tmp_path, "mlp6")
    measured = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    assert len(measured) == 12
    spec = read_spec(study)
    assert spec.menu == ["fp16", "fp8_e4m3", "int8"]
    assert [o["name"] for o in spec.objectives] == ["latency", "capacity"]
    assert spec.sampler["name"] == "layerwise" and spec.sampler["seed"] == 3  # the default
    assert study.metric_names == ["latency", "capacity"]
    assert all(t.user_attrs["latency_source"] == "model" for t in measured)


def test_resume_continues_the_stored_study(cli, tmp_path):
    assert cli("search", "mlp6", "--trials", "8", "--seed", "1", *ROOF).returncode == 0
    r = cli("resume", "mlp6", "--trials", "5", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resuming study mlp6: " in r.stdout
    study = load(tmp_path, "mlp6")
    measured = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    assert len(measured) == 13
    assert len({t.user_attrs["config"] for t in measured}) == 13  # nothing measured twice


@pytest.mark.parametrize("extra, difference", [
    (("--formats", "fp16,int8"), "menu: stored fp16,fp8_e4m3,int8, requested fp16,int8"),
    (("--network", "mlp6-decode"), "network: stored mlp6"),
    (("--objective", "latency", "--objective", "capacity", "--objective", "tests.plugins:constant_one:minimize"),
     "objectives: stored latency:minimize, capacity:maximize, requested latency:minimize, capacity:maximize, constant_one:minimize"),
    (("--device", "h200"), "device: stored NVIDIA H100"),
])
def test_resume_with_a_different_setup_is_refused_naming_the_difference(cli, tmp_path, extra, difference):
    assert cli("search", "mlp6", "--trials", "3", *ROOF).returncode == 0
    r = cli("resume", "mlp6", "--trials", "2", "--no-progress", *extra)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refusing to resume study 'mlp6'")
    assert difference in err[0]
    assert "Traceback" not in r.stderr


def test_searching_an_existing_study_name_points_to_resume(cli):
    assert cli("search", "mlp6", "--trials", "2", *ROOF).returncode == 0
    r = cli("search", "mlp6", "--trials", "2", *ROOF)
    assert r.returncode == 2 and "already exists" in r.stderr and "mpsearch resume mlp6" in r.stderr


def test_enumerate_measures_every_configuration_and_marks_the_study_exhaustive(cli, tmp_path):
    (tmp_path / "tiny.toml").write_text('name = "tiny"\nbatch = 64\nsizes = [256, 128, 64, 32]\n')
    r = cli("enumerate", "tiny.toml", "--formats", "fp16,int8", *ROOF)
    assert r.returncode == 0, r.stderr
    study = load(tmp_path, "tiny-fp16-int8-exhaustive")
    assert sorted(t.user_attrs["config"] for t in study.trials) == sorted(
        f"{a},{b},{c}" for a in ("fp16", "int8") for b in ("fp16", "int8") for c in ("fp16", "int8"))
    spec = read_spec(study)
    assert spec.exhaustive and spec.reference_point is not None


def test_enumerate_refuses_a_space_above_the_limit_and_says_why(cli):
    r = cli("enumerate", "mlp6", "--limit", "100", *ROOF)
    assert r.returncode == 2
    assert "3^6 = 729 configurations, above --limit 100" in r.stderr


def test_a_plugin_that_fails_records_the_reason_and_the_study_goes_on(cli, tmp_path):
    r = cli("search", "mlp6", "--trials", "10", "--seed", "0", *ROOF, "--objective", "latency",
            "--objective", "flaky=tests.plugins:fails_on_int8_first_layer:maximize")
    assert r.returncode == 0, r.stderr
    study = load(tmp_path, "mlp6")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed and complete
    assert all(t.user_attrs["config"].startswith("int8") for t in failed)
    assert all("flaky (tests.plugins:fails_on_int8_first_layer) raised RuntimeError: no int8 here" in t.user_attrs["fail_reason"]
               for t in failed)


@pytest.mark.parametrize("plugin, reason", [
    ("tests.plugins:returns_nan", "returned nan; it must return a finite float"),
    ("tests.plugins:returns_inf", "returned inf; it must return a finite float"),
    ("tests.plugins:returns_string", "returned str 'good'; it must return a float"),
])
def test_a_plugin_returning_a_non_number_fails_its_trials_with_the_reason(cli, tmp_path, plugin, reason):
    r = cli("search", "mlp6", "--trials", "3", *ROOF, "--objective", "latency", "--objective", plugin)
    assert r.returncode == 1 and r.stderr.startswith("error: no Pareto front"), r.stderr  # every trial failed
    study = load(tmp_path, "mlp6")
    assert study.trials and all(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    assert all(reason in t.user_attrs["fail_reason"] for t in study.trials)


@pytest.mark.parametrize("args, message", [
    (("search", "mlp7", "--trials", "1"), "unknown preset 'mlp7'"),
    (("search", "mlp6", "--trials", "1", "--formats", "fp16,fp9"), "unknown format 'fp9'"),
    (("search", "mlp6", "--trials", "1", "--objective", "latency", "--objective", "no_such_pkg.mod:f"),
     "cannot import module 'no_such_pkg.mod'"),
    (("search", "mlp6", "--trials", "1", "--objective", "latency", "--objective", "tests.plugins:missing"),
     "has no attribute 'missing'"),
    (("search", "mlp6", "--trials", "1", "--objective", "latency"), "at least 2 objectives"),
    (("search", "mlp6", "--trials", "1", "--storage", "sqlite:////nonexistent/dir/x.db"), "folder /nonexistent/dir does not exist"),
    (("search", "mlp6", "--trials", "1", "--storage", "postgresql://nobody@127.0.0.1:1/none"), "cannot be opened"),
    (("search", "mlp6", "--trials", "1", "--storage", "bogus"), "is not a URL"),
    (("search", "mlp6"), "the search has no budget"),
    (("search", "mlp6", "--trials", "1", "--target-hv", "0.99", "--sampler", "tpe"), "--target-hv needs a model of the front"),
    (("resume", "nothere", "--trials", "1"), "no study 'nothere'"),
    (("search", "mlp6", "--trials", "1", "--device", "a100", "--formats", "fp16,fp8"), "fp8_e4m3 cannot run on sm_80"),
])
def test_bad_input_gives_one_line_and_a_nonzero_exit(cli, args, message):
    r = cli(*args, "--backend", "roofline", "--no-progress") if args[0] != "resume" else cli(*args)
    assert r.returncode != 0
    lines = [l for l in r.stderr.strip().splitlines() if not l.startswith("warning:")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_toml_is_one_line(cli, tmp_path):
    (tmp_path / "bad.toml").write_text("sizes = [1, 2")
    r = cli("search", "bad.toml", "--trials", "1", *ROOF)
    assert r.returncode == 2 and r.stderr.startswith("error: bad.toml: malformed TOML")


def test_debug_shows_the_traceback(cli):
    r = cli("--debug", "search", "mlp7", "--trials", "1", *ROOF)
    assert r.returncode != 0 and "Traceback" in r.stderr
