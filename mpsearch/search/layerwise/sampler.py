"""The Optuna sampler: reads the study, fits the models, builds candidates, ranks them (see the
package docstring)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
# A core dependency; optuna.samplers loads no torch (GPSampler imports it lazily).
import optuna.samplers as _optuna_samplers

from mpsearch.errors import InvalidSpecError
from mpsearch.search.constraints import Constraint, parse_constraint, stored_constraints
from mpsearch.search.layerwise.confidence import front_confidence
from mpsearch.search.layerwise.feasibility import DEFAULT_PRIOR, Feasibility
from mpsearch.search.layerwise.features import Structure
from mpsearch.search.layerwise.model import Posterior, fit
from mpsearch.search.layerwise.observations import Observations, read_observations
from mpsearch.search.layerwise.pareto import DEFAULT_MAX_FRONT, extreme_dp, pareto_dp
from mpsearch.space import Config, SearchSpace

_DIRECTIONS = ("minimize", "maximize")

DEFAULT_SETTINGS: dict[str, Any] = {
    # Trials before the model proposes: trial j gives every decision a different format (a random
    # permutation per decision). 0 by default: the prior (shape features) already proposes sensibly.
    "n_startup_trials": 0,  # None: len(menu)
    "n_posterior_samples": 32,  # Monte Carlo samples for EHVI
    "n_thompson_fronts": 2,  # posterior samples whose Pareto-DP fronts seed the candidates
    "max_candidates": 400,  # EHVI (Monte Carlo) ranks this many candidates, screened from all
    "max_front": DEFAULT_MAX_FRONT,  # a DP state holding more Pareto points is thinned (and says so)
    "boundary_prior_ratio": None,  # boundary vs op prior scale; None: averaged over (0.03, 0.1, 0.3)
    "confidence_samples": 32,  # posterior samples for front_confidence
    "reference_point": None,  # in the objectives' own directions; None: from the model (see below)
    "constraints": None,  # ["latency<=3.0", ...]; None: the study's stored constraints
    "infeasible_prior": DEFAULT_PRIOR,  # prior probability that a layer cannot run in a format
}
_FULL_SEARCH_EVERY_UP_TO = 16  # measurements; beyond, the full hyperparameter search runs at ×1.2 steps
_FULL_SEARCH_GROWTH = 1.2
_FULL_SEARCH_LAST = 64  # and not beyond: its ~1,000 factorisations cost seconds at hundreds of measurements


def full_search_points(n: int) -> int:
    """The largest anchor <= n: the number of measurements at which the model's full
    hyperparameter search last ran (between anchors only its kept grid points are re-weighted)."""
    anchor = min(n, _FULL_SEARCH_EVERY_UP_TO)
    while n >= _FULL_SEARCH_EVERY_UP_TO and int(np.ceil(anchor * _FULL_SEARCH_GROWTH)) <= min(n, _FULL_SEARCH_LAST):
        anchor = int(np.ceil(anchor * _FULL_SEARCH_GROWTH))
    return anchor


class LayerwiseSampler(_optuna_samplers.BaseSampler):
    """Layer-additive Bayesian multi-objective sampler; see the package docstring.

    ``space``: the search space (parameters are its decisions). ``directions``: "minimize" or
    "maximize" per objective, in the study's order (at least 2). ``exact[i]``: objective i in closed
    form, ``f(config) -> float`` (e.g. capacity); the others are modelled. ``seed``: makes proposals
    reproducible. ``settings``: see ``DEFAULT_SETTINGS``.
    """

    def __init__(self, space: SearchSpace, directions: Sequence[str],
                 exact: dict[int, Callable[[Config], float]] | None = None, seed: int | None = None,
                 **settings: Any):
        directions = list(directions)
        if len(directions) < 2:
            raise InvalidSpecError(
                f"the layerwise sampler needs at least 2 objectives, got {len(directions)} ({directions}): add e.g. capacity")
        for i, d in enumerate(directions):
            if d not in _DIRECTIONS:
                raise InvalidSpecError(f"directions[{i}] must be 'minimize' or 'maximize', got {d!r}")
        exact = dict(exact or {})
        for i, func in exact.items():
            if not isinstance(i, int) or not 0 <= i < len(directions):
                raise InvalidSpecError(f"exact objective index must be an int in [0, {len(directions) - 1}], got {i!r}")
            if not callable(func):
                raise InvalidSpecError(f"exact[{i}] must be a callable f(config) -> float, got {type(func).__name__}")
        self._settings = _checked_settings(settings, len(directions))
        self.space = space
        self.directions = directions
        self.seed = seed
        self._exact = exact
        self._sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
        self._modelled = [i for i in range(len(directions)) if i not in exact]
        self._structure = Structure(space)
        self._exact_unary, self._exact_is_additive = self._linearise_exact()
        self._exact_cache: dict[tuple[int, ...], np.ndarray] = {}
        design_rng = np.random.default_rng(None if seed is None else [seed, 0x5EED])
        f = self._structure.n_formats
        self._startup_perms = np.stack([design_rng.permutation(f) for _ in range(self._structure.n_decisions)], axis=1) \
            if self._structure.n_decisions else np.zeros((f, 0), dtype=np.int64)
        self._fallback = _optuna_samplers.RandomSampler(seed=seed)
        self._additive_rank = self._structure.additive_rank()
        self._kept: dict[int, tuple[int, tuple]] = {}  # objective -> (anchor, grid points kept there)

    # ---- public --------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The settings (JSON-able) that rebuild this sampler: ``LayerwiseSampler(space, directions,
        exact, seed, **settings())``."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._settings.items()}

    def front_confidence(self, study: Any, target_fraction: float) -> float:
        """The model's probability that the measured front holds at least ``target_fraction`` of the
        true front's hypervolume (see :func:`mpsearch.search.layerwise.confidence.front_confidence`)."""
        return front_confidence(self, study, target_fraction)

    def reference_point(self, study: Any) -> list[float]:
        """The reference point hypervolumes are measured against, in the objectives' own directions:
        the ``reference_point`` setting, else the one stored with the study, else the worst value of
        each objective over the whole space under the posterior mean (a Viterbi pass), pushed out
        by 10 % of its range, as :func:`mpsearch.search.hypervolume.reference_point` does."""
        obs = self.observations(study)
        posts = self.fit(obs, self._rng(study, tag=0x4EF), 1)
        return list(self.reference(study, obs, posts) * self._sign)

    # ---- Optuna sampler interface --------------------------------------------------------------

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {name: CategoricalDistribution(list(self.space.menu)) for name in self._structure.names}

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        codes = self._propose(study, trial)
        params = {name: self._structure.menu[c] for name, c in zip(self._structure.names, codes)}
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        # Only parameters outside the mpsearch space (a user's extra suggest) land here.
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    # ---- the model (also used by the confidence estimate) ---------------------------------------

    def observations(self, study: Any) -> Observations:
        return read_observations(study, self._structure.names, self._structure.menu, self._sign)

    def feasibility(self, obs: Observations) -> Feasibility:
        st = self._structure
        return Feasibility(st.n_decisions, st.n_formats, obs.codes, obs.refused, self._settings["infeasible_prior"])

    def fit(self, obs: Observations, rng: np.random.Generator, n_samples: int) -> list[Posterior]:
        """One posterior per modelled objective. The full hyperparameter search runs at anchor counts
        of measurements (every count up to 16, then 20, 24, 29, 35, 42, 51 and 62), on the first
        measurements up to the anchor; other fits re-weight only the grid points kept there. So a proposal costs a few
        factorisations, and depends only on the study's contents (never on this instance's past)."""
        st = self._structure
        n = len(obs.codes)
        x, onehot = st.design(obs.codes), st.onehot(obs.codes)
        ratio = self._settings["boundary_prior_ratio"]
        out = []
        for i in self._modelled:
            anchor = full_search_points(n)
            if self._kept.get(i, (None,))[0] != anchor:
                at = fit(x[:anchor], onehot[:anchor], obs.values[:anchor, i], st, 1, np.random.default_rng(0), ratio)
                self._kept[i] = (anchor, at.kept)
            out.append(fit(x, onehot, obs.values[:, i], st, n_samples, rng, ratio, cached=self._kept[i][1]))
        return out

    def predict_mean(self, codes: np.ndarray, posts: list[Posterior], weights: list[np.ndarray] | None = None) -> np.ndarray:
        """Objective values (minimisation-oriented) of ``codes`` (C, D) under each weight vector of
        ``weights`` (one (S, p) array per modelled objective; default: the posterior means), plus the
        non-additive part's posterior mean: (S, C, M)."""
        weights = weights if weights is not None else [p.mean[None, :] for p in posts]
        s = weights[0].shape[0] if weights else 1
        out = np.empty((s, len(codes), len(self.directions)))
        out[:] = self.exact_values(codes)[None]
        onehot = self._structure.onehot(codes) if any(p.residual for p in posts) else None
        for w, post, i in zip(weights, posts, self._modelled):
            out[:, :, i] = self._structure.predict(codes, w)
            if post.residual is not None:
                out[:, :, i] += post.residual.mean_std(onehot)[0][None, :]
        return out

    def predict_samples(self, codes: np.ndarray, posts: list[Posterior], rng: np.random.Generator,
                        measured_errors: bool = False) -> np.ndarray:
        """(S, C, M) draws of what measuring each configuration would return: a posterior sample of
        the additive part, the non-additive part's posterior, and the noise. ``measured_errors``: the
        noise is instead one of the model's leave-one-out errors on the measurements (how far the
        prediction of a measured configuration from the others was off), picked at random, so an
        unmeasured configuration can deviate as far as a measured one did, heavy tails included."""
        s = len(posts[0].samples) if posts else 1
        out = np.empty((s, len(codes), len(self.directions)))
        out[:] = self.exact_values(codes)[None]
        onehot = self._structure.onehot(codes) if any(p.residual for p in posts) else None
        for post, i in zip(posts, self._modelled):
            out[:, :, i] = self._structure.predict(codes, post.samples)
            empirical = measured_errors and len(post.loo_errors) > 0
            spread = np.zeros((s, len(codes))) if empirical else np.broadcast_to(post.noise[:, None], (s, len(codes)))
            if post.residual is not None:
                mean, std = post.residual.mean_std(onehot)
                out[:, :, i] += mean[None, :]
                spread = np.sqrt(spread ** 2 + std[None, :] ** 2)
            out[:, :, i] += rng.standard_normal((s, len(codes))) * spread
            if empirical:
                out[:, :, i] += rng.choice(post.loo_errors, (s, len(codes)))
        return out

    def exact_values(self, codes: np.ndarray) -> np.ndarray:
        """(C, M): the exactly known objectives (minimisation-oriented), 0 in the other columns."""
        out = np.zeros((len(codes), len(self.directions)))
        if not self._exact:
            return out
        if self._exact_is_additive:
            rows = np.arange(self._structure.n_decisions)
            for i, unary in self._exact_unary.items():
                out[:, i] = unary[rows, codes].sum(axis=1)
            return out
        for r, row in enumerate(codes):
            key = tuple(int(c) for c in row)
            if key not in self._exact_cache:
                self._exact_cache[key] = self._call_exact(row[None, :])[0]
            out[r] = self._exact_cache[key]
        return out

    def dp_front(self, weights: list[np.ndarray], rng: np.random.Generator, allowed: np.ndarray | None = None) -> np.ndarray:
        """Pareto-optimal configurations (codes) of the additive model with one weight vector per
        modelled objective, over the ``allowed`` formats."""
        st = self._structure
        m = len(self.directions)
        unary = np.zeros((st.n_decisions, st.n_formats, m))
        pair = np.zeros((max(st.n_decisions - 1, 0), st.n_formats, st.n_formats, m))
        for w, i in zip(weights, self._modelled):
            u, p = st.to_dp_terms(w[None, :])
            unary[:, :, i], pair[..., i] = u[..., 0], p[..., 0]
        for i, u in self._exact_unary.items():
            unary[:, :, i] = u
        return pareto_dp(unary, pair, max_front=self._settings["max_front"], rng=rng, allowed=allowed).codes

    def reference(self, study: Any, obs: Observations, posts: list[Posterior]) -> np.ndarray:
        """Minimisation-oriented reference point (see :meth:`reference_point`)."""
        given = self._settings["reference_point"]
        if given is None:
            from mpsearch.search.record import read_spec

            try:
                spec = read_spec(study)
            except Exception:  # a foreign study's attributes: no stored reference
                spec = None
            if spec is not None and spec.reference_point and len(spec.reference_point) == len(self.directions):
                given = spec.reference_point
        if given is not None:
            return np.asarray(given, dtype=float) * self._sign
        st = self._structure
        allowed = self.feasibility(obs).allowed
        lo, hi = np.zeros(len(self.directions)), np.zeros(len(self.directions))
        for post, i in zip(posts, self._modelled):
            u, p = st.to_dp_terms(post.mean[None, :])
            lo[i] = extreme_dp(u[..., 0], p[..., 0], False, allowed)
            hi[i] = extreme_dp(u[..., 0], p[..., 0], True, allowed)
        for i, u in self._exact_unary.items():
            lo[i], hi[i] = extreme_dp(u, None, False, allowed), extreme_dp(u, None, True, allowed)
        if len(obs.values):
            lo = np.minimum(lo, obs.values.min(axis=0))
            hi = np.maximum(hi, obs.values.max(axis=0))
        pad = np.maximum.reduce([(hi - lo) * 0.1, np.abs(hi) * 1e-9, np.full_like(hi, 1e-9)])
        return hi + pad

    def constraints(self, study: Any) -> list[tuple[int, Constraint]]:
        """(objective index, constraint) of the bounds the search must respect."""
        names = list(study.metric_names or [f"objective_{i}" for i in range(len(self.directions))])
        given = self._settings["constraints"]
        parsed = [parse_constraint(text, names) for text in given] if given is not None else stored_constraints(study)
        return [(names.index(c.objective), c) for c in parsed if c.objective in names]

    def rng(self, study: Any, trial: Any = None, tag: int = 0) -> np.random.Generator:
        return self._rng(study, trial, tag)

    @property
    def structure(self) -> Structure:
        return self._structure

    @property
    def additive_rank(self) -> int:
        return self._additive_rank

    @property
    def modelled(self) -> list[int]:
        return list(self._modelled)

    # ---- internals -----------------------------------------------------------------------------

    def _rng(self, study: Any, trial: Any = None, tag: int = 0) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        number = trial.number if trial is not None else len(study.get_trials(deepcopy=False))
        return np.random.default_rng([self.seed, tag, number])

    def _configs(self, codes: np.ndarray) -> list[Config]:
        menu, names = self._structure.menu, self._structure.names
        return [self.space.config_from_params({n: menu[c] for n, c in zip(names, row)}) for row in codes]

    def _linearise_exact(self) -> tuple[dict[int, np.ndarray], bool]:
        """Unary terms (D, F) of each exact objective around the all-``menu[0]`` configuration, and
        whether they reproduce the exact function (checked on random configurations): then
        candidates are scored from the table, else by calling the function."""
        st = self._structure
        if not self._exact:
            return {}, True
        base = np.zeros(st.n_decisions, dtype=np.int64)
        probes = [base]
        for d in range(st.n_decisions):
            for f in range(1, st.n_formats):
                row = base.copy()
                row[d] = f
                probes.append(row)
        values = self._call_exact(np.stack(probes))
        out = {}
        for i in self._exact:
            unary = np.zeros((st.n_decisions, st.n_formats))
            unary[0, :] = values[0, i]
            k = 1
            for d in range(st.n_decisions):
                for f in range(1, st.n_formats):
                    unary[d, f] += values[k, i] - values[0, i]
                    k += 1
            out[i] = unary
        check = np.random.default_rng(0).integers(0, st.n_formats, (16, st.n_decisions))
        rows = np.arange(st.n_decisions)
        truth = self._call_exact(check)
        additive = all(np.allclose(out[i][rows, check].sum(axis=1), truth[:, i], rtol=1e-9, atol=1e-9)
                       for i in self._exact)
        return out, additive

    def _call_exact(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(codes), len(self.directions)))
        for r, config in enumerate(self._configs(codes)):
            for i, func in self._exact.items():
                out[r, i] = self._sign[i] * float(func(config))
        return out

    def _startup_codes(self, index: int) -> np.ndarray | None:
        n = self._settings["n_startup_trials"]
        n = self._structure.n_formats if n is None else n
        if index >= n:
            return None
        f = self._structure.n_formats
        # Beyond len(menu) startup trials, cycle with a shift so rows stay distinct.
        return (self._startup_perms[index % f] + index // f) % f

    def _propose(self, study: Any, trial: Any) -> np.ndarray:
        from mpsearch.search.layerwise.proposal import propose

        return propose(self, study, trial)


def _checked_settings(settings: dict[str, Any], n_objectives: int) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise InvalidSpecError(f"unknown layerwise sampler setting {unknown[0]!r}; allowed: {', '.join(DEFAULT_SETTINGS)}")
    out = {**DEFAULT_SETTINGS, **settings}
    for key in ("n_posterior_samples", "n_thompson_fronts", "max_candidates", "max_front", "confidence_samples"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSpecError(f"layerwise setting {key} must be an integer >= 1, got {value!r}")
    startup = out["n_startup_trials"]
    if startup is not None and (isinstance(startup, bool) or not isinstance(startup, int) or startup < 0):
        raise InvalidSpecError(f"layerwise setting n_startup_trials must be an integer >= 0 or None, got {startup!r}")
    ratio = out["boundary_prior_ratio"]
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0):
        raise InvalidSpecError(f"layerwise setting boundary_prior_ratio must be a number >= 0 or None, got {ratio!r}")
    ref = out["reference_point"]
    if ref is not None and (not isinstance(ref, (list, tuple)) or len(ref) != n_objectives):
        raise InvalidSpecError(
            f"layerwise setting reference_point must list {n_objectives} numbers (one per objective), got {ref!r}")
    prior = out["infeasible_prior"]
    if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0 < prior < 1:
        raise InvalidSpecError(f"layerwise setting infeasible_prior must be a number in (0, 1), got {prior!r}")
    given = out["constraints"]
    if given is not None and (not isinstance(given, (list, tuple)) or not all(isinstance(c, str) for c in given)):
        raise InvalidSpecError(f"layerwise setting constraints must be a list of texts like 'latency<=3.0', got {given!r}")
    return out
