"""What the API returns: a stored study with its front, ties grouped, and how a run ended."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# Objective values equal to this many significant digits are one point of the front: the same
# latency summed over layers in another order can differ in the last bits.
TIE_DIGITS = 9


# --- results --------------------------------------------------------------------------------------

def group_ties(front: Any, objectives: Sequence[str]) -> Any:
    """The front with configurations of equal objective values (to :data:`TIE_DIGITS` significant
    digits) as one row: the first (lowest trial number at that point) stands for them, column
    ``alternatives`` lists the others' configurations and ``n_alternatives`` counts them."""
    frame = front.copy()
    if frame.empty:
        frame["alternatives"] = pd_empty_object()
        frame["n_alternatives"] = []
        return frame
    keys = [f"_tie_{i}" for i in range(len(objectives))]
    for key, name in zip(keys, objectives):
        frame[key] = frame[name].map(lambda v: float(f"{v:.{TIE_DIGITS}g}"))
    frame["_tie"] = frame.groupby(keys, sort=False).ngroup()
    members = frame.groupby("_tie", sort=False)["config"].agg(list)
    out = frame.drop_duplicates("_tie").copy()
    out["alternatives"] = [members[g][1:] for g in out["_tie"]]
    out["n_alternatives"] = out["alternatives"].map(len)
    return out.drop(columns=[*keys, "_tie"]).reset_index(drop=True)


def pd_empty_object() -> Any:
    import pandas as pd

    return pd.Series([], dtype=object)


def no_front_message(study: Any) -> str:
    """One line: the study has no Pareto front, and the reason its last failed trial gave."""
    import optuna

    from mpsearch.search.record import FAIL_ATTR

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    last = failed[-1].user_attrs.get(FAIL_ATTR, "") if failed else ""
    return (f"no Pareto front: none of the {len(trials)} trials of study {study.study_name} completed with a "
            f"feasible configuration" + (f" ({len(failed)} failed; last reason: {last})" if last else ""))


@dataclass
class SearchResult:
    """A stored study and, after a run, how that run ended.

    ``front`` and ``trials`` are read from the study each time (they see what other workers add)."""

    study: Any  # optuna.Study
    storage: str  # its storage URL
    outcome: Any = None  # mpsearch.search.run.SearchOutcome of the run that made this result; None from load()
    space_size: int | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def objectives(self) -> list[str]:
        from mpsearch.search.results import objective_names

        return objective_names(self.study)

    @property
    def trials(self) -> Any:
        """Every trial: number, state, objective values, config, latency origin, failure reason."""
        from mpsearch.search.results import trials_frame

        return trials_frame(self.study)

    @property
    def front(self) -> Any:
        """The Pareto front, one row per point: trial, objective values, ``latency_source``,
        ``config`` (per-layer formats, comma-separated), one column per layer, and ``alternatives``
        / ``n_alternatives`` (other configurations with the same objective values)."""
        from mpsearch.search.results import pareto_frame

        return group_ties(pareto_frame(self.study), self.objectives)

    @property
    def best_feasible(self) -> str | None:
        """Under constraints: one line naming the best configuration that meets them; else None."""
        from mpsearch.search.constraints import best_feasible_text

        return best_feasible_text(self.study)

    def report(self, out: str | Path | None = None, *, y: str | None = None, plotlyjs: str | bool = True,
               exhaustive: bool = True) -> Path:
        """Write the study's report folder (plots, CSV/JSON, summary; default ``reports/NAME``), as
        ``mpsearch report`` does, and return it."""
        from mpsearch.report import compute_report
        from mpsearch.report.compute import StudyRef
        from mpsearch.report.render import write_report
        from mpsearch.validation import check_output_folder

        folder = Path(out) if out is not None else Path("reports") / self.name
        check_output_folder(folder, "out")
        write_report(compute_report(StudyRef(self.name, self.storage), exhaustive=exhaustive), folder,
                     y=y, plotlyjs=plotlyjs)
        return folder

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the study, how the run ended, and the front (what ``--json`` prints)."""
        import json

        from mpsearch.search.storage import redacted

        front = self.front
        out: dict[str, Any] = {"study": self.name, "storage": redacted(self.storage), "objectives": self.objectives,
                               "trials": len(self.study.get_trials(deepcopy=False))}
        if self.outcome is not None:
            o = self.outcome
            out.update(stopped=o.stop_reason, measured=o.measured, failed=o.failed, infeasible=o.infeasible,
                       repeats=o.repeats, collisions=o.collisions)
        out["best_feasible"] = self.best_feasible
        out["front"] = json.loads(front.to_json(orient="records")) if not front.empty else []
        return out
