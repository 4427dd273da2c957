"""The search loop: ask a configuration, measure it unless it was measured already, tell the result.

Budget semantics: ``trials`` counts *measurements* (configurations measured for the first time,
successfully or not). A proposal of an already-measured configuration is told PRUNED, with user attr
``repeat_of`` naming the trial that measured it: it costs no measurement, is not counted, and is
never a second COMPLETE trial of one configuration (a front, optuna-dashboard's best trials and the
hypervolume see each configuration once). The sampler is told, as of every trial, and reads the
values from the trial that measured it.

Each trial's writes (its parameters, attributes and constraints) are gathered and written in a few
transactions (:mod:`mpsearch.search.writes`), and what other workers have stored is read through
Optuna's cached storage, which fetches only trials new since the last read: the loop's cost per trial
does not grow with the study. The loop stops at the first of:
the trial budget, the timeout, every configuration of the space measured, a stagnant front
(``patience`` measurements without a change of the Pareto front), the layerwise sampler's confidence
that the front is found (``target_hv``), too many repeats in a row (the sampler is stuck), or too
many failures in a row (something systematic is wrong). The reason is returned and stored on the
study.

Several workers may run this loop on one study (:mod:`mpsearch.search.workers`): each trial carries a
heartbeat while it runs, trials of dead workers are swept and re-measured, a configuration another
worker is measuring is not measured again (the trial is told FAIL with ``collided_with``), and a
worker with a study-wide budget stops when the study has spent it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mpsearch.errors import MpsearchError, UnsupportedConfigError
from mpsearch.objectives import Objective, check_objective_value
from mpsearch.search.constraints import set_trial_constraints, stored_constraints
from mpsearch.search import attrs
from mpsearch.search.record import (
    CONFIG_ATTR, DEVICE_ATTR, FAIL_ATTR, INFEASIBLE_CONSTRAINT, REPEAT_ATTR, STOP_ATTR, WORKER_ATTR, is_feasible,
)
from mpsearch.search.study import store_reference_point
from mpsearch.search.workers import COLLISION_ATTR, MEASURE_START_ATTR, RETRY_ATTR, Coordinator
from mpsearch.search.interrupts import recorded_interrupts
from mpsearch.search.lookups import ConfigIndex, measured_config_ids, trials_of_config
from mpsearch.search.writes import buffered
from mpsearch.space import SearchSpace

MAX_REPEATS_IN_A_ROW = 200
MAX_FAILURES_IN_A_ROW = 10
INFEASIBLE = INFEASIBLE_CONSTRAINT


@dataclass
class Budget:
    trials: int | None = None
    timeout_s: float | None = None
    patience: int | None = None
    target_hv: float | None = None

    def __post_init__(self) -> None:
        from mpsearch.errors import InvalidSpecError

        if self.trials is not None and self.trials < 1:
            raise InvalidSpecError(f"--trials must be an integer >= 1, got {self.trials}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise InvalidSpecError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.patience is not None and self.patience < 1:
            raise InvalidSpecError(f"--patience must be an integer >= 1, got {self.patience}")
        if self.target_hv is not None and not 0 < self.target_hv <= 1:
            raise InvalidSpecError(f"--target-hv must be in (0, 1], got {self.target_hv}")
        if self.trials is None and self.timeout_s is None and self.patience is None and self.target_hv is None:
            raise InvalidSpecError("the search has no budget: give --trials N and/or --timeout SECONDS")


@dataclass
class SearchOutcome:
    measured: int = 0
    repeats: int = 0
    failed: int = 0
    infeasible: int = 0
    collisions: int = 0  # trials not measured because another worker was measuring the configuration
    lost_tells: int = 0  # measurements whose trial a sweep had failed meanwhile (re-measured elsewhere)
    stop_reason: str = ""
    trial_numbers: list[int] = field(default_factory=list)


def measured_configs(study: Any) -> dict[str, Any]:
    """Configuration key → the first finished trial that measured it (complete, or infeasible)."""
    return {key: study._storage.get_trial(trial_id) for key, trial_id in measured_config_ids(study).items()}


class _Front:
    """The points of ``study.best_trials`` (complete, feasible, not dominated), kept up to date as
    this process tells trials, without reading the study again. Only a single search loop uses it
    (``--patience`` is refused with several workers), so no other process adds trials meanwhile."""

    def __init__(self, study: Any):
        import optuna

        self.sign = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
        self.points = [self._oriented(t) for t in study.best_trials]

    def _oriented(self, trial: Any) -> tuple[float, ...]:
        return tuple(s * v for s, v in zip(self.sign, trial.values))

    @staticmethod
    def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and a != b

    def add(self, trial: Any) -> bool:
        """Take a newly told complete trial into account; True when the front changed."""
        if trial.values is None or not is_feasible(trial):
            return False
        p = self._oriented(trial)
        # Not dominated by the front means not dominated by any trial (dominance is transitive).
        if any(self._dominates(f, p) for f in self.points):
            return False
        self.points = [f for f in self.points if not self._dominates(p, f)] + [p]
        return True


def run_search(
    study: Any,
    space: SearchSpace,
    objectives: Sequence[Objective],
    budget: Budget,
    *,
    progress: bool = True,
    device: str = "",
    on_trial: Callable[[Any], None] | None = None,
    coordinator: Coordinator | None = None,
) -> SearchOutcome:
    """Run trials on ``study`` until ``budget`` is spent; see the module docstring.

    ``coordinator`` sets heartbeats, the sweep of dead workers' trials, the plug-in timeout and a
    study-wide budget; the default one (no study budget) is right for a single process too: it
    re-measures the trials a killed earlier run left RUNNING.
    """
    with recorded_interrupts() as stop_if_interrupted:
        return _run_search(study, space, objectives, budget, progress, device, on_trial, coordinator,
                           stop_if_interrupted)


def _run_search(study: Any, space: SearchSpace, objectives: Sequence[Objective], budget: Budget, progress: bool,
                device: str, on_trial: Callable[[Any], None] | None, coordinator: Coordinator | None,
                stop_if_interrupted: Callable[[], None]) -> SearchOutcome:
    import optuna

    coord = coordinator or Coordinator()
    network = space.network
    bounds, names = stored_constraints(study), [o.name for o in objectives]
    outcome = SearchOutcome()
    # Trials a killed earlier run (or a dead worker) left RUNNING: failed, and queued again.
    for gone in coord.sweep(study, force=True):
        _note(None, f"trial {gone.number}: {gone.reason}"
                    + ("; its configuration is queued to be measured again" if gone.requeued else ""))
    start = time.monotonic()
    # Configuration → id of the trial that measured it: ids only, a trial is read when it is needed.
    index = ConfigIndex(study)
    index.refresh()
    known = index.done
    last_refresh = time.monotonic()
    newest = -1  # the number of the newest trial this loop asked: the study holds at least newest + 1
    front = _Front(study) if budget.patience is not None else None
    since_front_change = 0
    repeats_in_a_row = failures_in_a_row = 0
    last_failure = ""
    beat = writes = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget.trials, unit="trial", desc=f"search {study.study_name}", dynamic_ncols=True)

    def stop(reason: str) -> SearchOutcome:
        outcome.stop_reason = reason
        return outcome

    def swept_meanwhile(trial: Any, values: Any = None) -> None:
        beat.stop()
        outcome.lost_tells += 1
        _note(bar, f"trial {trial.number} was failed by another worker's sweep while measured here "
                   f"(raise --stale-after); its configuration was queued again"
                   + (f"; values {values} not stored" if values else ""))

    def tell(trial: Any, values: Any = None, state: Any = None) -> Any:
        """Write what the trial kept, stop its heartbeat, then tell it; None if a sweep failed it meanwhile."""
        try:
            writes.flush()
        except optuna.exceptions.UpdateFinishedTrialError:
            swept_meanwhile(trial, values)
            return None
        beat.stop()
        try:
            return study.tell(trial, values, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as err:
            if isinstance(err, ValueError) and "Cannot tell a" not in str(err):
                raise
            swept_meanwhile(trial, values)
            return None

    try:
        while True:
            stop_if_interrupted()  # a Ctrl-C that a library's finalizer swallowed
            if budget.trials is not None and outcome.measured >= budget.trials:
                return stop(f"trial budget reached ({budget.trials} measurements)")
            if budget.timeout_s is not None and time.monotonic() - start >= budget.timeout_s:
                return stop(f"timeout reached ({budget.timeout_s:g} s)")
            if len(known) >= space.size:
                return stop(f"every configuration of the space is measured ({space.size})")
            if budget.patience is not None and since_front_change >= budget.patience:
                return stop(f"stagnation: the Pareto front did not change in {budget.patience} measurements")
            if budget.target_hv is not None and hasattr(study.sampler, "front_confidence") and outcome.measured:
                confidence = study.sampler.front_confidence(study, budget.target_hv)
                if confidence >= 0.95:
                    return stop(f"target reached: the model is {confidence:.0%} sure the front holds >= {budget.target_hv:.0%} of the best hypervolume")
            if repeats_in_a_row >= MAX_REPEATS_IN_A_ROW:
                return stop(f"the sampler proposed {MAX_REPEATS_IN_A_ROW} measured configurations in a row (try --sampler layerwise or tpe)")
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                return stop(f"{MAX_FAILURES_IN_A_ROW} trials failed in a row; last reason: {last_failure}")
            shared = coord.study_budget_reason(study)
            if shared:
                return stop(shared)
            coord.sweep(study)
            if newest + 1 >= space.size and time.monotonic() - last_refresh >= coord.heartbeat_s:
                # Other workers' measurements, for the "every configuration" stop above (each trial
                # asks only about its own configuration): once the study holds enough trials to
                # cover the space, at most once per heartbeat interval.
                last_refresh = time.monotonic()
                index.refresh()

            # Born owned: a worker killed right after this leaves a trial the next sweep can tell is dead.
            trial = coord.ask(study)
            beat = coord.heartbeat(trial)
            writes = buffered(trial)
            try:
                config = space.suggest(trial)
                # The claim: written, with the parameters, before the same configuration's trials are
                # read below (see mpsearch.search.workers).
                trial.set_user_attr(CONFIG_ATTR, config.key)
                writes.flush()
                outcome.trial_numbers.append(trial.number)
                newest = max(newest, trial.number)

                rivals = []
                if config.key not in known:  # another worker may have measured it, or be measuring it
                    same = trials_of_config(study, config.key, (optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.RUNNING), exclude=trial._trial_id)
                    for t in same:
                        if t.state == optuna.trial.TrialState.COMPLETE:
                            known.setdefault(config.key, t._trial_id)
                        elif REPEAT_ATTR not in t.user_attrs and COLLISION_ATTR not in t.user_attrs:
                            rivals.append(t)  # (a repeat or a backed-off trial never measures)
                prior = study._storage.get_trial(known[config.key]) if config.key in known else None
                if prior is not None:
                    trial.set_user_attr(REPEAT_ATTR, prior.number)
                    # The configuration's constraints (it is as feasible as when it was measured).
                    for name, value in (prior.constraints or {}).items():
                        trial.set_constraint(name, value)
                    tell(trial, state=optuna.trial.TrialState.PRUNED)
                    outcome.repeats += 1
                    repeats_in_a_row += 1
                    continue
                if rivals:
                    rival = min(rivals, key=lambda t: t.number)
                    trial.set_user_attr(COLLISION_ATTR, rival.number)
                    trial.set_user_attr(FAIL_ATTR, f"not measured: trial {rival.number} "
                                                   f"({rival.user_attrs.get(WORKER_ATTR, '?')}) is measuring {config.key}")
                    tell(trial, state=optuna.trial.TrialState.FAIL)
                    if RETRY_ATTR in trial.user_attrs:  # a re-measurement owed to a dead worker stays owed
                        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.user_attrs[RETRY_ATTR]})
                    outcome.collisions += 1
                    continue
                repeats_in_a_row = 0
                # Marks the trial as an in-flight measurement (other workers count it against a shared budget).
                trial.set_user_attr(MEASURE_START_ATTR, time.time())
                if coord.study_budget is not None:  # others count it now; else it is written with the result
                    writes.flush()
                outcome.measured += 1
                if bar is not None:
                    bar.update(1)

                values, reason = [], None
                t0 = time.perf_counter()
                try:
                    for objective in objectives:
                        evaluation = coord.evaluate(objective, network, config)
                        # Latency too: a backend returning NaN must fail its trial with the reason.
                        values.append(check_objective_value(objective.name, evaluation.value))
                        for key, value in evaluation.attrs.items():
                            trial.set_user_attr(key, value)
                    trial.set_user_attr(DEVICE_ATTR, device)
                except UnsupportedConfigError as err:
                    # Deterministic: this configuration can never run. Told as complete-but-infeasible
                    # with pessimistic values so samplers learn to avoid it (they ignore FAILED trials).
                    trial.set_user_attr(FAIL_ATTR, str(err))
                    trial.set_constraint(INFEASIBLE, 1.0)
                    set_trial_constraints(trial, bounds, names, None)
                    worst = [float("1e30") if o.direction == "minimize" else float("-1e30") for o in objectives]
                    finished = tell(trial, worst)
                    if finished is not None:
                        known[config.key] = finished._trial_id
                    outcome.infeasible += 1
                    _note(bar, f"trial {trial.number} {config.key}: infeasible: {err}")
                    continue
                except MpsearchError as err:
                    reason = str(err)
                except optuna.exceptions.UpdateFinishedTrialError:
                    swept_meanwhile(trial)  # writing the result onto a trial a sweep has failed
                    continue
                except Exception as err:  # a bug in a backend or plug-in must not lose the study
                    reason = f"{type(err).__name__}: {err}"
                trial.set_user_attr(attrs.MEASURE_S, round(time.perf_counter() - t0, 4))
                if reason is not None:
                    trial.set_user_attr(FAIL_ATTR, reason.splitlines()[0] if reason else "?")
                if reason is not None:
                    last_failure = reason.splitlines()[0] if reason else "?"
                    tell(trial, state=optuna.trial.TrialState.FAIL)
                    outcome.failed += 1
                    failures_in_a_row += 1
                    _note(bar, f"trial {trial.number} {config.key} failed: {last_failure}")
                    continue
                failures_in_a_row = 0
                trial.set_constraint(INFEASIBLE, 0.0)
                set_trial_constraints(trial, bounds, names, values)
                finished = tell(trial, values)
                if finished is None:
                    continue
                known[config.key] = finished._trial_id
                if on_trial is not None:
                    on_trial(finished)
                if front is not None:
                    since_front_change = 0 if front.add(finished) else since_front_change + 1
            except optuna.exceptions.UpdateFinishedTrialError:
                # Any write onto a trial that another worker's sweep failed meanwhile (this worker was
                # paused past --stale-after): what was found is dropped; the sweeper queued the
                # configuration again.
                swept_meanwhile(trial)
    finally:
        if beat is not None:
            beat.stop()
        if bar is not None:
            bar.close()
        if outcome.stop_reason:
            try:
                study.set_user_attr(STOP_ATTR, outcome.stop_reason)
                # Fixed here, by a process that writes anyway, so that reports only read it.
                store_reference_point(study)
            except Exception:
                pass  # the reason is also returned; losing these attributes loses no measurement


def _note(bar: Any, message: str) -> None:
    if bar is not None:
        bar.write(message)
    else:
        print(message)
