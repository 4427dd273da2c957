"""The search loop's promises: budgets count measurements, nothing is measured twice, failures are
recorded and the study goes on, unsupported configurations become infeasible, and stops say why."""

import os
import signal
import time

import optuna
import pytest

from mpsearch.backends.base import BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.errors import KernelCheckError, UnsupportedConfigError
from mpsearch.network import Layer, Network
from mpsearch.objectives import CapacityObjective, LatencyObjective
from mpsearch.search import attrs
from mpsearch.search.attrs import CONFIG, REPEAT
from mpsearch.search.interrupts import recorded_interrupts
from mpsearch.search.record import is_feasible
from mpsearch.search.run import Budget, run_search
from mpsearch.space import SearchSpace

COMPLETE = optuna.trial.TrialState.COMPLETE
NET = Network("t3", (Layer("a", 16, 64, 64), Layer("b", 16, 64, 64), Layer("c", 16, 64, 64)))


class CountingBackend(LatencyBackend):
    """Additive fake latency; counts measurements per configuration; can refuse or break some."""

    def __init__(self, unsupported=(), broken=()):
        self.calls: dict[str, int] = {}
        self.unsupported, self.broken = set(unsupported), set(broken)

    @property
    def capabilities(self):
        return BackendCapabilities("fake", "model", "FakeGPU", 90, frozenset({"fp16", "int8", "fp8_e4m3"}))

    def prepare(self, network, menu):
        pass

    def measure(self, network, config):
        self.calls[config.key] = self.calls.get(config.key, 0) + 1
        if config.key in self.unsupported:
            raise UnsupportedConfigError(f"no kernel for {config.key}")
        if config.key in self.broken:
            raise KernelCheckError(f"kernel for {config.key} failed its check (rel. error 1.17)")
        ms = sum({"fp16": 3.0, "int8": 2.0, "fp8_e4m3": 1.5}[f] for f in config.formats)
        return LatencyResult(ms, "model", "FakeGPU")


def setup(menu=("fp16", "int8"), sampler=None, **backend_kw):
    backend = CountingBackend(**backend_kw)
    space = SearchSpace(NET, menu)
    objectives = [LatencyObjective(backend), CapacityObjective()]
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    return backend, space, objectives, study


def test_trial_budget_counts_distinct_measurements_and_nothing_is_measured_twice():
    backend, space, objectives, study = setup()
    outcome = run_search(study, space, objectives, Budget(trials=6), progress=False)
    assert outcome.measured == 6
    assert len(backend.calls) == 6 and set(backend.calls.values()) == {1}
    repeats = [t for t in study.trials if REPEAT in t.user_attrs]
    assert len(repeats) == outcome.repeats > 0
    for t in repeats:  # a repeat names the trial that measured its configuration, and measured nothing
        measured = study.trials[t.user_attrs[REPEAT]]
        assert measured.state == COMPLETE and measured.user_attrs[CONFIG] == t.user_attrs[CONFIG]
        assert t.state == optuna.trial.TrialState.PRUNED and t.values is None


def test_a_repeated_proposal_is_not_a_second_complete_trial_so_fronts_list_each_configuration_once():
    # RandomSampler over 8 configurations proposes some again: those must not be stored as
    # measurements (optuna-dashboard would list the copies among the best trials).
    backend, space, objectives, study = setup()
    outcome = run_search(study, space, objectives, Budget(trials=8), progress=False)
    assert outcome.repeats > 0
    complete = [t for t in study.trials if t.state == COMPLETE]
    keys = [t.user_attrs[CONFIG] for t in complete]
    assert len(keys) == len(set(keys)) == outcome.measured == 8
    best = [t.user_attrs[CONFIG] for t in study.best_trials]
    assert len(best) == len(set(best))
    assert {t.number for t in study.trials if t.state == optuna.trial.TrialState.PRUNED} == \
        {t.number for t in study.trials if REPEAT in t.user_attrs}


def test_the_sampler_is_told_of_every_trial_repeats_included():
    told = []

    class Recording(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):
            told.append((trial.number, state))
            super().after_trial(study, trial, state, values)

    backend, space, objectives, study = setup(sampler=Recording(seed=0))
    outcome = run_search(study, space, objectives, Budget(trials=8), progress=False)
    assert outcome.repeats > 0
    assert [n for n, _ in told] == [t.number for t in study.trials]
    assert sum(state == optuna.trial.TrialState.PRUNED for _, state in told) == outcome.repeats


def test_search_stops_when_every_configuration_is_measured():
    backend, space, objectives, study = setup()
    outcome = run_search(study, space, objectives, Budget(trials=100), progress=False)
    assert outcome.measured == space.size == 8
    assert "every configuration of the space is measured" in outcome.stop_reason
    assert study.user_attrs[attrs.STOP] == outcome.stop_reason


def test_a_failing_kernel_fails_its_trial_with_the_reason_and_the_search_goes_on():
    backend, space, objectives, study = setup(broken={"int8,int8,int8"})
    study.enqueue_trial({"a": "int8", "b": "int8", "c": "int8"})
    outcome = run_search(study, space, objectives, Budget(trials=5), progress=False)
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    assert "failed its check (rel. error 1.17)" in first.user_attrs[attrs.FAIL]
    # A failed configuration may be tried again (a failure can be transient); the others go on.
    assert outcome.failed == backend.calls["int8,int8,int8"] >= 1 and outcome.measured == 5
    measured_ok = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and REPEAT not in t.user_attrs]
    assert len(measured_ok) == 5 - outcome.failed


def test_unsupported_configurations_are_infeasible_kept_off_the_front_and_not_remeasured():
    bad = "fp16,fp16,fp16"
    backend, space, objectives, study = setup(unsupported={bad})
    for _ in range(3):
        study.enqueue_trial({"a": "fp16", "b": "fp16", "c": "fp16"})
    outcome = run_search(study, space, objectives, Budget(trials=8), progress=False)
    assert backend.calls[bad] == 1
    assert outcome.infeasible == 1
    infeasible = [t for t in study.trials if t.user_attrs[CONFIG] == bad]
    assert len(infeasible) >= 3 and not any(is_feasible(t) for t in infeasible)
    assert bad not in {t.user_attrs[CONFIG] for t in study.best_trials}


def test_ten_failures_in_a_row_stop_the_search_with_the_last_reason():
    everything = {",".join((a, b, c)) for a in ("fp16", "int8") for b in ("fp16", "int8") for c in ("fp16", "int8")}
    backend, space, objectives, study = setup(menu=("fp16", "int8", "fp8_e4m3"),
                                              broken=everything | {"fp8_e4m3,fp16,fp16"})
    for key in sorted(everything)[:8] + ["fp8_e4m3,fp16,fp16"] * 3:
        study.enqueue_trial(dict(zip("abc", key.split(","))))
    outcome = run_search(study, space, objectives, Budget(trials=50), progress=False)
    assert outcome.stop_reason.startswith("10 trials failed in a row; last reason: kernel for")
    assert outcome.failed == 10


def test_patience_stops_a_search_whose_front_no_longer_changes():
    backend, space, objectives, study = setup(menu=("fp16", "int8", "fp8_e4m3"))
    outcome = run_search(study, space, objectives, Budget(trials=27, patience=3), progress=False)
    assert outcome.stop_reason == "stagnation: the Pareto front did not change in 3 measurements"
    assert outcome.measured < 27


def test_a_search_without_any_budget_is_refused():
    from mpsearch.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="no budget"):
        Budget()
    with pytest.raises(InvalidSpecError, match="--trials must be an integer >= 1, got 0"):
        Budget(trials=0)


def test_trials_record_where_their_latency_came_from():
    backend, space, objectives, study = setup()
    run_search(study, space, objectives, Budget(trials=2), progress=False, device="FakeGPU")
    t = study.trials[0]
    assert t.user_attrs[attrs.LATENCY_SOURCE] == "model" and t.user_attrs[attrs.LATENCY_DEVICE] == "FakeGPU"
    assert t.user_attrs["device"] == "FakeGPU"


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_the_claim_check_finds_exactly_the_other_trials_of_the_same_configuration(tmp_path, storage):
    from mpsearch.search.lookups import trials_of_config
    from mpsearch.search.storage import open_storage

    url = None if storage == "memory" else open_storage(f"sqlite:///{tmp_path}/claims.db")
    study = optuna.create_study(storage=url, directions=["minimize", "maximize"])
    S = optuna.trial.TrialState
    made = {}
    # Keys with characters JSON escapes, so the stored text and the looked-up text must agree.
    for name, key, state in [("done", 'fp16,"int8"', S.COMPLETE), ("running", 'fp16,"int8"', S.RUNNING),
                             ("mine", 'fp16,"int8"', S.RUNNING), ("failed", 'fp16,"int8"', S.FAIL),
                             ("other", "fp16,fp16", S.COMPLETE), ("unclaimed", None, S.RUNNING)]:
        trial = study.ask()
        if key is not None:
            trial.set_user_attr(CONFIG, key)
        if state == S.COMPLETE:
            study.tell(trial, [1.0, 2.0])
        elif state == S.FAIL:
            study.tell(trial, state=S.FAIL)
        made[name] = trial._trial_id
    found = trials_of_config(study, 'fp16,"int8"', (S.COMPLETE, S.RUNNING), exclude=made["mine"])
    assert [t._trial_id for t in found] == [made["done"], made["running"]]
    assert [t.state for t in found] == [S.COMPLETE, S.RUNNING]
    assert trials_of_config(study, "int8,int8", (S.COMPLETE, S.RUNNING)) == []


class ControlCInAFinalizer:
    """An object whose finalizer is cut short by Ctrl-C, as a connection pool's can be during a garbage
    collection: Python prints that KeyboardInterrupt ("Exception ignored in ...") and drops it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # where the interrupt is raised, inside this finalizer


class SwallowsControlC(CountingBackend):
    """Gets Ctrl-C swallowed by a finalizer during its ``at``-th measurement, which succeeds."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def measure(self, network, config):
        if sum(self.calls.values()) + 1 == self.at:
            ControlCInAFinalizer()  # collected at once
        return super().measure(network, config)


@pytest.fixture
def default_sigint_handler():
    """Python's own SIGINT handler, whatever the runner installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_control_c_swallowed_by_a_finalizer_still_stops_the_search_after_the_measurement(default_sigint_handler):
    backend = SwallowsControlC(at=3)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(KeyboardInterrupt):
        run_search(study, SearchSpace(NET, ("fp16", "int8")), [LatencyObjective(backend), CapacityObjective()],
                   Budget(trials=8), progress=False)
    # The interrupted measurement is kept; nothing after it is measured.
    assert sum(backend.calls.values()) == 3
    assert len([t for t in study.trials if t.state == COMPLETE]) == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the search's own handler is gone


def test_an_error_after_a_swallowed_control_c_reads_as_the_interruption(default_sigint_handler):
    def storage_broken_by_the_interrupt(trial):
        raise RuntimeError("can't change 'autocommit' now: connection in transaction status ACTIVE")

    backend = SwallowsControlC(at=1)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(KeyboardInterrupt) as caught:
        run_search(study, SearchSpace(NET, ("fp16", "int8")), [LatencyObjective(backend), CapacityObjective()],
                   Budget(trials=8), progress=False, on_trial=storage_broken_by_the_interrupt)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_an_error_without_control_c_is_not_taken_for_an_interruption(default_sigint_handler):
    def bug(trial):
        raise RuntimeError("a bug in the caller's callback")

    backend, space, objectives, study = setup()
    with pytest.raises(RuntimeError, match="a bug in the caller's callback"):
        run_search(study, space, objectives, Budget(trials=8), progress=False, on_trial=bug)


def test_a_control_c_swallowed_before_the_search_began_stops_it_before_any_measurement(default_sigint_handler):
    """As under the CLI, which records interrupts for the whole command (loading the study, preparing kernels)."""
    backend, space, objectives, study = setup()
    with pytest.raises(KeyboardInterrupt), recorded_interrupts():
        ControlCInAFinalizer()
        run_search(study, space, objectives, Budget(trials=8), progress=False)
    assert backend.calls == {}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
