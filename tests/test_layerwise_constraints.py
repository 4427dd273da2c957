"""``--constraint``: bounds on objectives, stored with the study, set on every trial for every
sampler, and the best configuration meeting them named by the search and the report."""

from __future__ import annotations

import optuna
import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.search.attrs import CONFIG, REPEAT
from mpsearch.search.constraints import Constraint, best_feasible, parse_constraint, stored_constraints

ROOF = ("--backend", "roofline", "--no-progress")


def _load(tmp_path, name="mlp6"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/studies/{name}.db")


@pytest.mark.parametrize("sampler", ["layerwise", "tpe"])
def test_a_latency_bound_is_on_every_trial_and_the_search_names_the_best_configuration_meeting_it(cli, tmp_path, sampler):
    r = cli("search", "mlp6", "--trials", "12", "--seed", "0", "--sampler", sampler,
            "--constraint", "latency<=3.2", *ROOF)
    assert r.returncode == 0, r.stderr
    study = _load(tmp_path)
    assert stored_constraints(study) == [Constraint("latency", "<=", 3.2)]
    for t in study.trials:
        assert set(t.constraints) == {"unsupported", "latency<=3.2"}
        # A repeated proposal (PRUNED, no values) carries the constraints of the trial that measured it.
        measured = study.trials[t.user_attrs[REPEAT]] if REPEAT in t.user_attrs else t
        assert t.constraints["latency<=3.2"] == pytest.approx(measured.values[0] - 3.2)
    meeting = [t for t in study.trials if t.values is not None and t.values[0] <= 3.2]
    best = max(meeting, key=lambda t: (t.values[1], -t.values[0]))
    line = next(l for l in r.stdout.splitlines() if l.startswith("best configuration meeting latency<=3.2"))
    assert f"trial {best.number} " in line and best.user_attrs[CONFIG] in line
    # Optuna's own front holds only trials that meet the bound.
    assert all(t.values[0] <= 3.2 for t in study.best_trials)
    report = cli("report", "mlp6", "--no-files", "--no-exhaustive")
    assert report.returncode == 0, report.stderr
    assert f"trial {best.number} " in report.stdout and "best configuration meeting latency<=3.2" in report.stdout


@pytest.mark.parametrize("text, words", [
    ("latency<3", "must look like OBJECTIVE<=BOUND"),
    ("speed<=3", "'speed', which is not an objective of this study; objectives: latency, capacity"),
    ("latency<=fast", "the bound 'fast' is not a number"),
    ("latency<=inf", "must be a finite number"),
])
def test_a_bad_constraint_is_a_one_line_error_naming_the_problem(cli, text, words):
    r = cli("search", "mlp6", "--trials", "2", "--constraint", text, *ROOF)
    assert r.returncode != 0
    assert words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_best_feasible_trial_is_the_best_in_the_unbounded_objective():
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.set_metric_names(["latency", "capacity"])
    bound = Constraint("latency", "<=", 3.0)
    for values in ((2.0, 10.0), (2.9, 30.0), (3.1, 50.0), (2.5, 30.0)):
        study.add_trial(optuna.trial.create_trial(values=values, system_attrs={}))
    best = best_feasible(study, [bound])
    # 3.1 breaks the bound; of the two with capacity 30 the faster wins.
    assert best["trial"] == 3 and best["values"] == {"latency": 2.5, "capacity": 30.0}
    assert best_feasible(study, [Constraint("latency", "<=", 1.0)]) is None


def test_a_constraint_on_a_maximised_objective_reads_as_a_lower_bound():
    c = parse_constraint(" capacity >= 600000 ", ["latency", "capacity"])
    assert (c.objective, c.sense, c.bound) == ("capacity", ">=", 600000.0)
    assert c.violation(700000) < 0 < c.violation(500000)
    with pytest.raises(InvalidSpecError):
        parse_constraint("capacity=>1", ["capacity"])
