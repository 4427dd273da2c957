"""Which decision/format pairs a backend cannot run, learnt from the configurations it refused.

A backend refuses a configuration because one of its layers cannot run in its format (a format the
device lacks, a reduction dimension the kernels cannot take): the configuration runs if and only if
every one of its (decision, format) pairs does. So:

- a pair that appears in any configuration that ran is feasible;
- a refused configuration is explained by its pairs not known to be feasible (its *suspects*); one
  suspect is then known infeasible, several share the blame: with a prior probability ``prior``
  that a pair cannot run, each suspect of a set S is infeasible with probability
  prior / (1 - (1 - prior)^|S|) (at least one of them is), and the evidence of several refused
  configurations combines as independent.

Proposals never contain a pair known to be infeasible, and the expected improvement of the others is
weighted by their probability of running.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRIOR = 0.05


class Feasibility:
    """(decision, format) infeasibility probabilities from feasible and refused configurations."""

    def __init__(self, n_decisions: int, n_formats: int, feasible: np.ndarray, refused: np.ndarray,
                 prior: float = DEFAULT_PRIOR):
        self.runs = np.zeros((n_decisions, n_formats), dtype=bool)
        rows = np.arange(n_decisions)
        for codes in np.atleast_2d(feasible).reshape(-1, n_decisions):
            self.runs[rows, codes] = True
        clear = np.ones((n_decisions, n_formats))  # probability the pair is not infeasible
        self.unexplained = 0  # refused configurations whose every pair ran elsewhere
        for codes in np.atleast_2d(refused).reshape(-1, n_decisions):
            suspects = [d for d in range(n_decisions) if not self.runs[d, codes[d]]]
            if not suspects:
                self.unexplained += 1  # a combination, not a pair, is refused: not learnable here
                continue
            blame = 1.0 if len(suspects) == 1 else prior / (1.0 - (1.0 - prior) ** len(suspects))
            for d in suspects:
                clear[d, codes[d]] *= 1.0 - blame
        self.p_infeasible = np.where(self.runs, 0.0, 1.0 - clear)
        self.any_refused = len(np.atleast_2d(refused).reshape(-1, n_decisions)) > 0

    @property
    def allowed(self) -> np.ndarray:
        """(D, F) bool: pairs not known to be infeasible."""
        return self.p_infeasible < 1.0 - 1e-12

    def probability(self, codes: np.ndarray) -> np.ndarray:
        """(C,) probability that each configuration of ``codes`` (C, D) runs."""
        codes = np.atleast_2d(codes)
        if not self.any_refused:
            return np.ones(len(codes))
        rows = np.arange(codes.shape[1])
        return np.prod(1.0 - self.p_infeasible[rows, codes], axis=1)
