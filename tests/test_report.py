"""`mpsearch report`: its files and numbers, checked against studies built here with Optuna directly."""

import json
import re

import optuna
import pandas as pd
import pytest

from mpsearch.cli import main
from mpsearch.errors import InvalidSpecError
from mpsearch.network import Layer, Network
from mpsearch.report import StudyRef, compute_report, parse_study_ref
from mpsearch.search import attrs as A
from mpsearch.search.record import CONFIG_ATTR, REPEAT_ATTR, SPEC_KEY, StudySpec, read_spec
from mpsearch.space import SearchSpace, capacity

optuna.logging.set_verbosity(optuna.logging.WARNING)

NET = Network("tiny3", (Layer("fc1", 64, 256, 512), Layer("fc2", 64, 128, 256), Layer("fc3", 64, 512, 128)))
MENU = ("fp16", "fp8_e4m3", "int8")
SPACE = SearchSpace(NET, MENU)
# A made-up latency with a cost per format and a price for every change of format between layers,
# so that the front has several steps and is not simply "fewest bits".
COST = {"fp16": 1.0, "fp8_e4m3": 0.52, "int8": 0.61}


def fake_latency(config):
    per_layer = sum(COST[config[l.name]] * l.k / 128 for l in NET.layers)
    changes = sum(a != b for a, b in zip(config.formats, config.formats[1:]))
    return round(per_layer + 0.37 * changes, 6)


def add_trial(study, config, *, state="COMPLETE", repeat_of=None, infeasible=False, device="Test GPU"):
    dist = {p: optuna.distributions.CategoricalDistribution(list(MENU)) for p, _ in SPACE.decisions}
    attrs = {CONFIG_ATTR: config.key}
    values = None
    if state == "COMPLETE":
        values = [fake_latency(config), float(capacity(NET, config))]
        attrs.update({A.LATENCY_SOURCE: "model", A.LATENCY_DEVICE: device, A.LATENCY_DETAIL: "made-up test model"})
        if infeasible:
            values = [0.01, 1e9]  # better than anything: only its infeasibility keeps it off the front
    else:
        attrs[A.FAIL] = "made to fail by the test"
    if repeat_of is not None:
        attrs[REPEAT_ATTR] = repeat_of
    trial = optuna.trial.create_trial(
        params=SPACE.params_from_config(config), distributions=dist, values=values, user_attrs=attrs,
        state=getattr(optuna.trial.TrialState, state),
        constraints={"unsupported": 1.0 if infeasible else 0.0} if state == "COMPLETE" else None,
    )
    study.add_trial(trial)


def new_study(url, name, *, exhaustive=False, device="Test GPU"):
    spec = StudySpec(
        network=NET.to_dict(), fingerprint=NET.fingerprint(), menu=list(MENU),
        objectives=[{"name": "latency", "direction": "minimize", "spec": "latency"},
                    {"name": "capacity", "direction": "maximize", "spec": "capacity"}],
        backend={"backend": "fake", "source": "model", "device": device, "arch": 90},
        sampler={"name": "enumerate" if exhaustive else "random", "seed": 0}, mpsearch_version="test",
        exhaustive=exhaustive,
    )
    study = optuna.create_study(storage=url, study_name=name, directions=["minimize", "maximize"])
    study.set_metric_names(["latency", "capacity"])
    study.set_user_attr(SPEC_KEY, spec.to_attr())
    return study


ALL = list(SPACE.all_configs())


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture
def searched(storage):
    """A search-like study: 14 distinct configurations, two repeats, a failure, an infeasible trial."""
    study = new_study(storage, "search")
    for config in ALL[::2]:
        add_trial(study, config)
    add_trial(study, ALL[0], repeat_of=0)
    add_trial(study, ALL[2], repeat_of=1)
    add_trial(study, ALL[1], state="FAIL")
    add_trial(study, ALL[3], infeasible=True)
    return study


def brute_force_front(rows):
    """Distinct configurations not dominated by any other (latency min, capacity max)."""
    out = {}
    for key, lat, cap in rows:
        dominated = any(l2 <= lat and c2 >= cap and (l2 < lat or c2 > cap) for _, l2, c2 in rows)
        if not dominated:
            out.setdefault(key, (lat, cap))
    return out


def staircase_area(points, ref):
    """2-D hypervolume by summing rectangles (latency minimised, capacity maximised)."""
    pts = sorted({p for p in points if p[0] < ref[0] and p[1] > ref[1]})
    area, best_cap = 0.0, ref[1]
    for i, (lat, cap) in enumerate(pts):
        best_cap = max(best_cap, cap)
        right = pts[i + 1][0] if i + 1 < len(pts) else ref[0]
        area += (right - lat) * (best_cap - ref[1])
    return area


def feasible_rows(study):
    return [(t.user_attrs[CONFIG_ATTR], *t.values) for t in study.trials
            if t.state.name == "COMPLETE" and all(v <= 0 for v in t.constraints.values())]


def test_front_equals_a_brute_force_non_dominated_filter_one_row_per_configuration(searched, storage):
    report = compute_report(StudyRef("search", storage), exhaustive=False)
    expected = brute_force_front(feasible_rows(searched))
    assert sorted(report.front["config"]) == sorted(expected)
    assert report.front["config"].is_unique
    for _, row in report.front.iterrows():
        assert (row["latency"], row["capacity"]) == pytest.approx(expected[row["config"]])
        assert [row[l] for l in report.layers] == row["config"].split(",")
    assert list(report.front["latency"]) == sorted(report.front["latency"])
    # the infeasible trial dominates every other on paper and must not be on the front
    assert ALL[3].key not in set(report.front["config"])


def test_hypervolume_uses_the_reference_point_the_search_stored_and_a_report_writes_nothing(searched, storage):
    from mpsearch.search.study import store_reference_point

    report = compute_report(StudyRef("search", storage), exhaustive=False)
    assert report.reference_point_derived  # none stored yet: derived from the trials, for this report only
    assert read_spec(optuna.load_study(study_name="search", storage=storage)).reference_point is None
    store_reference_point(searched)  # what a search does when it stops
    stored = read_spec(optuna.load_study(study_name="search", storage=storage)).reference_point
    assert stored == report.reference_point
    complete = [t.values for t in searched.trials if t.state.name == "COMPLETE"]
    assert stored[0] > max(v[0] for v in complete) and stored[1] < min(v[1] for v in complete)
    assert report.hypervolume == pytest.approx(staircase_area([(r[1], r[2]) for r in feasible_rows(searched)], stored))
    # A slower, lower-capacity trial arrives later: the reference point stays where it was.
    add_trial(searched, ALL[5])
    again = compute_report(StudyRef("search", storage), exhaustive=False)
    assert again.reference_point == stored and not again.reference_point_derived


def test_hypervolume_is_reported_as_a_share_of_the_exhaustive_front(searched, storage, tmp_path):
    from mpsearch.search.study import store_reference_point

    full = new_study(storage, "everything", exhaustive=True)
    for config in ALL:
        add_trial(full, config)
    store_reference_point(full)  # what `mpsearch enumerate` does once every configuration is measured
    report = compute_report(StudyRef("search", storage))
    e = report.exhaustive
    assert e is not None and e.study.name == "everything" and e.n_configs == len(ALL)
    ref = read_spec(optuna.load_study(study_name="everything", storage=storage)).reference_point
    mine = staircase_area([(r[1], r[2]) for r in feasible_rows(searched)], ref)
    best = staircase_area([(fake_latency(c), capacity(NET, c)) for c in ALL], ref)
    assert e.reference_point == ref
    assert e.percent == pytest.approx(100 * mine / best)
    assert 0 < e.percent < 100  # the search saw half the space and missed part of the front


def test_exhaustive_study_of_another_device_is_not_used(searched, storage):
    other = new_study(storage, "other-gpu", exhaustive=True, device="Another GPU")
    for config in ALL:
        add_trial(other, config, device="Another GPU")
    assert compute_report(StudyRef("search", storage), search_storages=[]).exhaustive is None
    with pytest.raises(InvalidSpecError, match="not an exhaustive study of search's space"):
        compute_report(StudyRef("search", storage), exhaustive=StudyRef("other-gpu", storage))


def test_cli_writes_the_report_files_with_every_trial_and_the_front(searched, storage, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "search", "--storage", storage, "--out", str(out), "--html-js", "cdn"]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "hypervolume =" in printed and "modelled for Test GPU (made-up test model)" in printed

    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["trial"]) == [t.number for t in searched.trials]
    assert list(trials["state"]) == [t.state.name for t in searched.trials]
    assert json.loads((out / "trials.json").read_text()) and len(json.loads((out / "trials.json").read_text())) == len(searched.trials)
    front = pd.read_csv(out / "front.csv")
    assert set(front["latency_detail"]) == {"made-up test model"} and set(front["latency_source"]) == {"model"}
    assert sorted(front["config"]) == sorted(brute_force_front(feasible_rows(searched)))
    assert set(trials.loc[trials["on_front"], "trial"]) == set(front["trial"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["front_size"] == len(front) and summary["trials"] == len(searched.trials)
    assert summary["space_size"] == len(ALL) and summary["distinct_configs"] == len(ALL[::2]) + 1  # + the infeasible one
    assert summary["hypervolume"] == pytest.approx(staircase_area(list(zip(front["latency"], front["capacity"])),
                                                                  summary["reference_point"]))
    for png in ("pareto.png", "formats_heatmap.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "pareto.html").read_text()
    fastest = front.iloc[0]
    assert f"fc1={fastest['fc1'].replace('fp8_e4m3', 'fp8')}" in html  # hover shows per-layer formats
    assert "front" in (out / "summary.txt").read_text()


def test_several_studies_are_overlaid_in_one_comparison_plot(searched, storage, tmp_path):
    second = new_study(storage, "second")
    for config in ALL[1::3]:
        add_trial(second, config)
    out = tmp_path / "cmp"
    assert main(["report", "search", "second", "--storage", storage, "--out", str(out), "--html-js", "cdn"]) == 0
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "compare.html").read_text()
    for name in ("search", "second"):  # one front trace per study, labelled with its menu and sampler
        assert re.search(rf'"name":"{name} \[fp16,fp8,int8; random\]: front \(\d+\)"', html)
    assert "latency (ms, modelled for Test GPU (made-up test model))" in html  # the shared origin, once
    assert (out / "search" / "trials.csv").exists() and (out / "second" / "trials.csv").exists()


def test_unknown_study_is_a_one_line_error_naming_study_and_storage(tmp_path, storage, searched, capsys):
    assert main(["report", "nope", "--storage", storage, "--no-files"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'nope'" in err and storage in err and "--list" in err and "search" in err


def test_missing_storage_file_is_an_error_and_is_not_created(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "ghost"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'ghost'" in err and "sqlite:///studies/ghost.db" in err and "--list" in err
    assert not (tmp_path / "studies" / "ghost.db").exists()


def test_list_shows_the_studies_of_a_storage(searched, storage, capsys):
    assert main(["report", "--list", "--storage", storage]) == 0
    assert "search" in capsys.readouterr().out


def test_a_y_axis_that_is_not_an_objective_is_refused(searched, storage, tmp_path, capsys):
    assert main(["report", "search", "--storage", storage, "--out", str(tmp_path / "r"), "--y", "accuracy"]) == 2
    assert "--y 'accuracy' is not an objective of study search" in capsys.readouterr().err


def test_study_ref_parses_name_and_storage():
    assert parse_study_ref("a@sqlite:///x.db") == StudyRef("a", "sqlite:///x.db")
    assert parse_study_ref("a", "journal:j.log") == StudyRef("a", "journal:j.log")
    assert parse_study_ref("a").storage == "sqlite:///studies/a.db"
    with pytest.raises(InvalidSpecError, match="empty storage"):
        parse_study_ref("a@")


def test_every_front_row_says_where_its_latency_came_from_when_origins_differ(storage):
    from rich.console import Console

    from mpsearch.report.render import print_summary

    study = new_study(storage, "mixed")
    add_trial(study, ALL[0])  # all fp16: the slowest, highest capacity
    add_trial(study, ALL[13], device="Other GPU")  # fp8 everywhere: the fastest
    report = compute_report(StudyRef("mixed", storage), exhaustive=False)
    assert sorted(report.front["device"]) == ["Other GPU", "Test GPU"]
    console = Console(record=True, width=200)
    print_summary(report, console)
    text = console.export_text()
    assert "latency from" in text
    assert "modelled for Other GPU" in text and "modelled for Test GPU" in text


def test_open_dashboard_without_optuna_dashboard_says_how_to_install_it(searched, storage, capsys):
    try:
        import optuna_dashboard  # noqa: F401
        pytest.skip("optuna-dashboard is installed here; the server would start")
    except ImportError:
        pass
    assert main(["report", "search", "--storage", storage, "--no-files", "--open-dashboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install optuna-dashboard" in err and f"optuna-dashboard {storage}" in err


def test_a_study_without_complete_trials_reports_its_failures_and_no_front(storage, tmp_path, capsys):
    study = new_study(storage, "failing")
    add_trial(study, ALL[0], state="FAIL")
    out = tmp_path / "r"
    assert main(["report", "failing", "--storage", storage, "--out", str(out), "--html-js", "cdn"]) == 0
    assert "no complete trial yet" in capsys.readouterr().out
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["state"]) == ["FAIL"] and trials["fail_reason"][0] == "made to fail by the test"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["front_size"] == 0 and summary["hypervolume"] is None and summary["reference_point"] is None
    assert not (out / "formats_heatmap.png").exists() and (out / "pareto.png").exists()


@pytest.mark.parametrize("missing", [("rich", "matplotlib", "plotly"), ("matplotlib",)])
def test_the_report_writes_tables_csv_and_json_without_the_optional_packages(searched, storage, tmp_path, missing):
    # The core dependencies alone (a fresh `pip install mpsearch`) must give the table, CSV and JSON;
    # plots are skipped with one line naming the extra that brings them.
    from tests.test_import_light import run_blocked

    code = f"""
from pathlib import Path
from mpsearch.report import StudyRef, compute_report
from mpsearch.report.render import print_summary, write_report
report = compute_report(StudyRef("search", {storage!r}), exhaustive=False)
print_summary(report)
written = write_report(report, Path({str(tmp_path / 'out')!r}))
print("WROTE", sorted(p.name for p in written))
"""
    r = run_blocked(missing, code)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["front.csv", "summary.json", "summary.txt", "trials.csv",
                                                      "trials.json"]
    front = pd.read_csv(out / "front.csv")
    assert list(front["config"]) == list(compute_report(StudyRef("search", storage), exhaustive=False).front["config"])
    assert json.loads((out / "summary.json").read_text())["study"] == "search"
    # The front's configurations are in the printed table and in summary.txt.
    for key in front["config"]:
        first = key.split(",")[0].replace("fp8_e4m3", "fp8")
        assert first in r.stdout
    assert "Pareto front" in r.stdout and "Pareto front" in (out / "summary.txt").read_text()
    hint = [line for line in r.stderr.splitlines() if "plots skipped" in line]
    assert len(hint) == 1 and "matplotlib" in hint[0] and "pip install 'mpsearch[plot]'" in hint[0]


def test_the_report_command_lists_and_compares_studies_with_the_core_dependencies_only(searched, storage, tmp_path):
    # `report --list` prints a plain table, and comparing two studies skips only the overlay plots,
    # when rich, matplotlib and plotly are all missing.
    from tests.test_import_light import run_blocked

    second = new_study(storage, "other")
    for config in ALL[1::3]:
        add_trial(second, config)
    code = f"""
import sys
from mpsearch.cli import main
sys.exit(main(["report", "--list", "--storage", {storage!r}])
         or main(["report", "search", "other", "--storage", {storage!r}, "--out", {str(tmp_path / 'rep')!r}]))
"""
    r = run_blocked(("rich", "matplotlib", "plotly"), code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "search" in r.stdout and "other" in r.stdout
    assert (tmp_path / "rep" / "search" / "front.csv").exists() and (tmp_path / "rep" / "other" / "front.csv").exists()
    assert not (tmp_path / "rep" / "compare.png").exists()
    assert any("compare.png/.html" in line and "mpsearch[plot]" in line for line in r.stderr.splitlines())
