"""The search loop: ask a configuration, measure it unless it was measured already, tell the result.

Budget semantics: ``trials`` counts *measurements* (configurations measured for the first time,
successfully or not). A proposal of an already-measured configuration is told with the stored values
(user attr ``repeat_of``) and costs no measurement; it is not counted. The loop stops at the first of:
the trial budget, the timeout, every configuration of the space measured, a stagnant front
(``patience`` measurements without a change of the Pareto front), the layerwise sampler's confidence
that the front is found (``target_hv``), too many repeats in a row (the sampler is stuck), or too
many failures in a row (something systematic is wrong). The reason is returned and stored on the
study.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mpsearch.errors import MpsearchError, UnsupportedConfigError
from mpsearch.objectives import Objective
from mpsearch.search.record import CONFIG_ATTR, DEVICE_ATTR, FAIL_ATTR, REPEAT_ATTR, STOP_ATTR, WORKER_ATTR
from mpsearch.space import SearchSpace

MAX_REPEATS_IN_A_ROW = 200
MAX_FAILURES_IN_A_ROW = 10
INFEASIBLE = "unsupported"  # constraint name for configurations the backend can never run


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
    stop_reason: str = ""
    trial_numbers: list[int] = field(default_factory=list)


def is_feasible(trial: Any) -> bool:
    """A finished trial whose configuration could run (its ``unsupported`` constraint is <= 0)."""
    return all(v <= 0 for v in (trial.constraints or {}).values())


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def measured_configs(study: Any) -> dict[str, Any]:
    """Configuration key → the first finished trial that measured it (complete, or infeasible)."""
    import optuna

    done: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        key = t.user_attrs.get(CONFIG_ATTR)
        if key and key not in done:
            done[key] = t
    return done


def _front_keys(study: Any) -> frozenset[str]:
    return frozenset(t.user_attrs.get(CONFIG_ATTR, "") for t in study.best_trials)


def run_search(
    study: Any,
    space: SearchSpace,
    objectives: Sequence[Objective],
    budget: Budget,
    *,
    progress: bool = True,
    device: str = "",
    on_trial: Callable[[Any], None] | None = None,
) -> SearchOutcome:
    """Run trials on ``study`` until ``budget`` is spent; see the module docstring."""
    import optuna

    network = space.network
    outcome = SearchOutcome()
    start = time.monotonic()
    known = measured_configs(study)
    front = _front_keys(study)
    since_front_change = 0
    repeats_in_a_row = failures_in_a_row = 0
    me = worker_id()
    last_failure = ""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget.trials, unit="trial", desc=f"search {study.study_name}", dynamic_ncols=True)

    def stop(reason: str) -> SearchOutcome:
        outcome.stop_reason = reason
        return outcome

    try:
        while True:
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

            trial = study.ask()
            config = space.suggest(trial)
            trial.set_user_attr(CONFIG_ATTR, config.key)
            trial.set_user_attr(WORKER_ATTR, me)
            outcome.trial_numbers.append(trial.number)

            if config.key not in known:  # another worker may have measured it meanwhile
                known.update({k: v for k, v in measured_configs(study).items() if k not in known})
            prior = known.get(config.key)
            if prior is not None:
                trial.set_user_attr(REPEAT_ATTR, prior.number)
                if INFEASIBLE in (prior.constraints or {}):
                    trial.set_constraint(INFEASIBLE, prior.constraints[INFEASIBLE])
                study.tell(trial, prior.values)
                outcome.repeats += 1
                repeats_in_a_row += 1
                continue
            repeats_in_a_row = 0
            outcome.measured += 1
            if bar is not None:
                bar.update(1)

            values, reason = [], None
            t0 = time.perf_counter()
            try:
                for objective in objectives:
                    evaluation = objective.evaluate(network, config)
                    values.append(evaluation.value)
                    for key, value in evaluation.attrs.items():
                        trial.set_user_attr(key, value)
                trial.set_user_attr(DEVICE_ATTR, device)
            except UnsupportedConfigError as err:
                # Deterministic: this configuration can never run. Told as complete-but-infeasible
                # with pessimistic values so samplers learn to avoid it (they ignore FAILED trials).
                trial.set_user_attr(FAIL_ATTR, str(err))
                trial.set_constraint(INFEASIBLE, 1.0)
                worst = [float("1e30") if o.direction == "minimize" else float("-1e30") for o in objectives]
                known[config.key] = study.tell(trial, worst)
                outcome.infeasible += 1
                _note(bar, f"trial {trial.number} {config.key}: infeasible: {err}")
                continue
            except MpsearchError as err:
                reason = str(err)
            except Exception as err:  # a bug in a backend or plug-in must not lose the study
                reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr("measure_s", round(time.perf_counter() - t0, 4))
            if reason is not None:
                last_failure = reason.splitlines()[0] if reason else "?"
                trial.set_user_attr(FAIL_ATTR, last_failure)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                outcome.failed += 1
                failures_in_a_row += 1
                _note(bar, f"trial {trial.number} {config.key} failed: {last_failure}")
                continue
            failures_in_a_row = 0
            trial.set_constraint(INFEASIBLE, 0.0)
            finished = study.tell(trial, values)
            known[config.key] = finished
            if on_trial is not None:
                on_trial(finished)
            new_front = _front_keys(study) if budget.patience is not None else front
            since_front_change = 0 if new_front != front else since_front_change + 1
            front = new_front
    finally:
        if bar is not None:
            bar.close()
        if outcome.stop_reason:
            try:
                study.set_user_attr(STOP_ATTR, outcome.stop_reason)
            except Exception:
                pass  # the reason is also returned; losing this attribute loses no measurement


def _note(bar: Any, message: str) -> None:
    if bar is not None:
        bar.write(message)
    else:
        print(message)
