"""The Python API (mpsearch.search / resume / enumerate / load), used as a notebook would."""

from __future__ import annotations

import ast

import optuna
import pandas as pd
import pytest

import mpsearch
from mpsearch.api.result import group_ties
from mpsearch.errors import InvalidSpecError, StudyMismatchError
from mpsearch.search.record import read_spec
from tests.conftest import REPO

TINY = {"name": "tiny", "batch": 64, "sizes": [256, 128, 64]}


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_search_returns_the_front_as_a_dataframe_the_study_and_writes_a_report(here):
    result = mpsearch.search("mlp6", trials=10, backend="roofline", seed=0)
    assert isinstance(result.study, optuna.Study) and result.name == "mlp6"
    assert result.storage == "sqlite:///studies/mlp6.db" and (here / "studies" / "mlp6.db").is_file()
    front = result.front
    assert isinstance(front, pd.DataFrame) and not front.empty
    assert {"trial", "latency", "capacity", "config", "alternatives", "n_alternatives"} <= set(front.columns)
    # The front is the study's own Pareto front: every best trial's point is a row.
    best = {tuple(t.values) for t in result.study.best_trials}
    assert {(r.latency, r.capacity) for r in front.itertuples()} == best
    assert result.outcome.measured == 10
    folder = result.report(here / "out")
    written = pd.read_csv(folder / "front.csv")
    assert sorted(written["trial"]) == sorted(front["trial"])


def test_network_may_be_a_network_a_toml_path_or_a_dict(here):
    (here / "tiny.toml").write_text('name = "tiny"\nbatch = 64\nsizes = [256, 128, 64]\n')
    for i, network in enumerate([mpsearch.Network.from_dict(TINY), "tiny.toml", here / "tiny.toml", TINY]):
        result = mpsearch.search(network, trials=2, backend="roofline", study_name=f"t{i}")
        assert read_spec(result.study).network["layers"] == [
            {"name": "fc1", "m": 64, "n": 128, "k": 256}, {"name": "fc2", "m": 64, "n": 64, "k": 128}]


def test_a_python_callable_is_an_objective_and_the_study_stores_no_code(here):
    seen = []

    def int8_layers(config, network):
        seen.append(config.key)
        return float(sum(config[layer] == "int8" for layer in network.layer_names))

    result = mpsearch.search(TINY, trials=4, backend="roofline", objectives=["latency", int8_layers])
    complete = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(seen) == 4 and len(complete) >= 4
    for t in complete:
        assert t.values[1] == t.user_attrs["config"].split(",").count("int8")
    objectives = read_spec(result.study).objectives
    assert objectives[1] == {"name": "int8_layers", "direction": "maximize", "spec": "int8_layers=<callable>:maximize"}


def test_a_named_minimised_callable_is_resumed_only_when_passed_again(here):
    fewer = mpsearch.objective(lambda config, network: float(len(set(config.formats))), name="kinds",
                               direction="minimize")
    mpsearch.search(TINY, trials=2, backend="roofline", objectives=["latency", fewer])
    with pytest.raises(InvalidSpecError) as refused:
        mpsearch.resume("tiny", trials=1)
    assert str(refused.value) == (
        "study 'tiny' has Python-callable objective kinds (minimize), which a study cannot store: pass it again: "
        "mpsearch.resume('tiny', objectives={'kinds': kinds_function})")
    # Passed again by name, the callable takes the stored direction.
    result = mpsearch.resume("tiny", trials=1, objectives={"kinds": lambda config, network: 1.0})
    assert result.outcome.measured == 1
    assert result.study.directions[1] == optuna.study.StudyDirection.MINIMIZE


def test_a_callable_passed_with_another_direction_is_refused_naming_it(here):
    mpsearch.search(TINY, trials=2, backend="roofline", objectives=["latency", mpsearch.objective(
        lambda c, n: 1.0, name="score", direction="minimize")])
    with pytest.raises(StudyMismatchError, match="objectives: stored latency:minimize, score:minimize, requested "
                                                 "latency:minimize, score:maximize"):
        mpsearch.resume("tiny", trials=1, objectives=[mpsearch.objective(lambda c, n: 1.0, name="score",
                                                                         direction="maximize")])


def test_a_callable_that_raises_fails_its_trial_with_the_reason_and_the_search_ends_without_a_front(here):
    def broken(config, network):
        raise RuntimeError("no model loaded")

    result = mpsearch.search(TINY, trials=3, backend="roofline", objectives=["latency", broken])
    failed = [t for t in result.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 3
    assert failed[0].user_attrs["fail_reason"] == "objective broken raised RuntimeError: no model loaded"
    assert result.front.empty


def test_a_lambda_without_a_name_is_refused_saying_how_to_name_it(here):
    with pytest.raises(InvalidSpecError, match=r"mpsearch.objective\(fn, name='accuracy'\)"):
        mpsearch.search(TINY, trials=1, backend="roofline", objectives=["latency", lambda c, n: 1.0])


def test_workers_refuse_a_callable_objective_before_creating_a_study(here):
    def score(config, network):
        return 1.0

    with pytest.raises(InvalidSpecError, match="objective score is a Python callable, which runs in this process only"):
        mpsearch.search(TINY, trials=4, workers=2, backend="roofline", objectives=["latency", score])
    assert not (here / "studies" / "tiny.log").exists()


def test_load_reads_a_study_where_search_put_it(here):
    made = mpsearch.search(TINY, trials=3, backend="roofline", seed=1)
    loaded = mpsearch.load("tiny")
    assert loaded.outcome is None
    pd.testing.assert_frame_equal(loaded.front, made.front)


def test_equal_objective_values_are_one_row_listing_the_alternatives(here):
    # Under the roofline model of an H100, fp8 and int8 run at one rate and hold 8 bits: every
    # configuration over that menu is the same point.
    result = mpsearch.enumerate(TINY, formats="fp8,int8", backend="roofline")
    front = result.front
    assert len(front) == 1
    assert front.loc[0, "n_alternatives"] == 3
    assert sorted([front.loc[0, "config"], *front.loc[0, "alternatives"]]) == [
        "fp8_e4m3,fp8_e4m3", "fp8_e4m3,int8", "int8,fp8_e4m3", "int8,int8"]


def test_group_ties_keeps_distinct_points_and_merges_values_equal_to_nine_digits():
    front = pd.DataFrame({"trial": [0, 1, 2, 3], "latency": [1.0, 1.0 + 1e-12, 2.0, 1.0],
                          "capacity": [5.0, 5.0, 9.0, 6.0], "config": ["a", "b", "c", "d"]})
    grouped = group_ties(front, ["latency", "capacity"])
    assert list(grouped["trial"]) == [0, 2, 3]
    assert list(grouped["alternatives"]) == [["b"], [], []]
    assert list(grouped["n_alternatives"]) == [1, 0, 0]


def test_resume_refuses_a_different_setup_naming_the_difference(here):
    mpsearch.search("mlp6", trials=2, backend="roofline")
    with pytest.raises(StudyMismatchError, match="menu: stored fp16,fp8_e4m3,int8, requested fp16,int8"):
        mpsearch.resume("mlp6", trials=1, formats="fp16,int8")


# --- structure ------------------------------------------------------------------------------------

def _module_imports() -> dict[str, set[str]]:
    """mpsearch module -> the mpsearch modules it imports anywhere in its source (function bodies too)."""
    modules = {}
    for path in (REPO / "mpsearch").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
        # A submodule using its own package's facade (``from mpsearch.objectives import Objective``
        # in mpsearch.objectives.sqnr) is how packages are built, not a circle between modules.
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_mpsearch_modules():
    cycles = _cycles(_module_imports())
    assert cycles == []


def test_the_cycle_check_sees_a_circle_through_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    # and the real graph has the edges the check relies on (a function-level import included)
    imports = _module_imports()
    assert "mpsearch.api" in imports["mpsearch.cli.search"]
    assert "mpsearch.objectives.sqnr" in imports["mpsearch.objectives"]  # imported inside parse_objective


def test_the_python_api_example_searches_resumes_and_reports(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(REPO / "examples" / "python_api.py"), str(out)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert "searched: 12 configurations measured" in r.stdout
    assert "resumed: " in r.stdout and "trial budget reached (8 measurements)" in r.stdout
    study = optuna.load_study(study_name="mlp6", storage=f"sqlite:///{out}/mlp6.db")
    measured = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    assert len(measured) == 20
    assert (out / "reports" / "mlp6" / "front.csv").is_file() and (out / "reports" / "mlp6" / "pareto.png").is_file()
