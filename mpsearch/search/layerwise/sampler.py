"""The Optuna sampler: observations from the study, model fits, candidates, EHVI, the stop rule's
confidence (see the package docstring)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
# A core dependency; optuna.samplers loads no torch (GPSampler imports it lazily).
import optuna.samplers as _optuna_samplers

from mpsearch.errors import InvalidSpecError
from mpsearch.search.layerwise.acquisition import mc_hvi, neighbours, unseen_unique
from mpsearch.search.layerwise.features import Structure
from mpsearch.search.layerwise.model import Posterior, fit_blr
from mpsearch.search.layerwise.pareto import extreme_dp, pareto_dp
from mpsearch.space import Config, SearchSpace

_DIRECTIONS = ("minimize", "maximize")

DEFAULT_SETTINGS: dict[str, Any] = {
    # Trials before the model proposes: trial j gives every decision a different format (a random
    # permutation per decision). 0 by default: the prior (shape features) already proposes sensibly,
    # and on the mlp6 benchmark a model-proposed first trial reached 99 % no later than a
    # random or balanced start (1-3 startup trials).
    "n_startup_trials": 0,  # None: len(menu)
    "n_posterior_samples": 32,  # Monte Carlo samples for EHVI
    "n_thompson_fronts": 4,  # posterior samples whose Pareto-DP fronts seed the candidates
    "max_candidates": 400,  # EHVI is evaluated on at most this many candidates
    "max_front": 1500,  # a DP state keeps at most this many Pareto points (thinned evenly)
    "boundary_prior_ratio": None,  # boundary vs op prior scale; None: averaged over (0.03, 0.1, 0.3)
    "confidence_samples": 32,  # posterior samples for front_confidence
    "reference_point": None,  # in the objectives' own directions; None: from the model (see below)
}
_ENUMERATE_UP_TO = 20000  # front_confidence draws every configuration's residual in spaces this small


@dataclass
class Observations:
    codes: np.ndarray  # (n, D) distinct completed configurations
    values: np.ndarray  # (n, M) minimisation-oriented (maximised objectives negated); repeats averaged
    pending: np.ndarray  # (r, D) RUNNING / WAITING configurations not completed
    failed: np.ndarray  # (q, D) FAILED configurations never completed: not modelled, not proposed




class LayerwiseSampler(_optuna_samplers.BaseSampler):
    """Layer-additive Bayesian multi-objective sampler; see the module docstring.

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
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise InvalidSpecError(
                f"unknown layerwise sampler setting {unknown[0]!r}; allowed: {', '.join(DEFAULT_SETTINGS)}")
        self._settings = {**DEFAULT_SETTINGS, **settings}
        for key in ("n_posterior_samples", "n_thompson_fronts", "max_candidates", "max_front", "confidence_samples"):
            value = self._settings[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSpecError(f"layerwise setting {key} must be an integer >= 1, got {value!r}")
        startup = self._settings["n_startup_trials"]
        if startup is not None and (isinstance(startup, bool) or not isinstance(startup, int) or startup < 0):
            raise InvalidSpecError(f"layerwise setting n_startup_trials must be an integer >= 0 or None, got {startup!r}")
        ratio = self._settings["boundary_prior_ratio"]
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0):
            raise InvalidSpecError(f"layerwise setting boundary_prior_ratio must be a number >= 0 or None, got {ratio!r}")
        ref = self._settings["reference_point"]
        if ref is not None and (not isinstance(ref, (list, tuple)) or len(ref) != len(directions)):
            raise InvalidSpecError(
                f"layerwise setting reference_point must list {len(directions)} numbers (one per objective), got {ref!r}")

        self.space = space
        self.directions = directions
        self.seed = seed
        self._exact = exact
        self._sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
        self._modelled = [i for i in range(len(directions)) if i not in exact]
        self._structure = Structure(space)
        self._exact_unary = self._linearise_exact()
        design_rng = np.random.default_rng(None if seed is None else [seed, 0x5EED])
        f = self._structure.n_formats
        self._startup_perms = np.stack([design_rng.permutation(f) for _ in range(self._structure.n_decisions)], axis=1) \
            if self._structure.n_decisions else np.zeros((f, 0), dtype=np.int64)
        self._fallback = _optuna_samplers.RandomSampler(seed=seed)
        self._additive_rank = self._structure.additive_rank()

    # ---- public --------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The settings (JSON-able) that rebuild this sampler: ``LayerwiseSampler(space, directions,
        exact, seed, **settings())``."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._settings.items()}

    def front_confidence(self, study: Any, target_fraction: float) -> float:
        """The model's probability that the current front's hypervolume is at least
        ``target_fraction`` of the true front's.

        For each posterior sample, the unmeasured configurations that could be on the true front
        get that sample's value plus their own draw of the non-additive residual (each configuration
        has its own, fixed, and a measurement reveals it): every configuration in a space of up to
        ``_ENUMERATE_UP_TO``, else the sample's Pareto-DP front and (up to ``max_candidates`` × 5 of)
        its one-decision neighbours. The true front is their front together with the measured
        points; the fraction is HV(measured front) / HV(true front), against the study's stored
        reference point (or the model's, see :meth:`reference_point`). Objectives known exactly
        enter with their exact values. Without the residual draws the model was sure of 99 % while
        97 % was found, on data with a ±5 % non-additive part.
        """
        if isinstance(target_fraction, bool) or not isinstance(target_fraction, (int, float)) \
                or not 0 < target_fraction <= 1:
            raise InvalidSpecError(f"target_fraction must be a number in (0, 1], got {target_fraction!r}")
        obs = self._observations(study)
        if len(obs.codes) <= self._additive_rank:
            # Fewer measurements than the additive part of the model has free parameters: whatever
            # the posterior says then rests on the prior's hyperparameters, and was overconfident in
            # tests (sure of 99 % with 68 % found after 3 trials). Claim nothing.
            return 0.0
        st = self._structure
        rng = self._rng(study, tag=0xC0F)
        n = self._settings["confidence_samples"]
        posts = self._fit(obs, rng, n)
        ref = self._reference(study, obs, posts)
        found = self._hv(obs.values, ref)
        measured = {tuple(r) for r in obs.codes}
        everything = None
        if st.n_formats ** st.n_decisions <= _ENUMERATE_UP_TO:
            everything = unseen_unique(
                np.array(list(itertools.product(range(st.n_formats), repeat=st.n_decisions)), dtype=np.int64), measured)
        hits = 0
        for s in range(n):
            weights = [p.samples[s][None, :] for p in posts]
            if everything is not None:
                pool = everything
            else:
                front = self._dp_front([w[0] for w in weights], rng)[0]
                near = unseen_unique(neighbours(front, st.n_formats), measured)
                cap = 5 * self._settings["max_candidates"]
                if len(near) > cap:
                    near = near[rng.choice(len(near), cap, replace=False)]
                pool = unseen_unique(np.concatenate([front, near]), measured)
            vals = self._predict(pool, weights)[0]
            for post, i in zip(posts, self._modelled):
                # The larger of the sampled residual and the leave-one-out error: the noise level
                # alone was underestimated where the boundary terms absorbed part of it, and a stop
                # rule should err on the side of measuring more.
                vals[:, i] += rng.normal(0.0, max(post.noise[s], post.loo_rms), len(pool))
            true = self._hv(np.concatenate([vals, obs.values]), ref)
            hits += found >= target_fraction * true - 1e-12 * abs(true)
        return hits / n

    def reference_point(self, study: Any) -> list[float]:
        """The reference point hypervolumes are measured against, in the objectives' own directions:
        the ``reference_point`` setting, else the one stored with the study, else the worst value of
        each objective over the whole space under the posterior mean (a Viterbi pass), pushed out
        by 10 % of its range, as :func:`mpsearch.search.hypervolume.reference_point` does."""
        obs = self._observations(study)
        posts = self._fit(obs, self._rng(study, tag=0x4EF), 1)
        return list(self._reference(study, obs, posts) * self._sign)

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

    # ---- internals -----------------------------------------------------------------------------

    def _rng(self, study: Any, trial: Any = None, tag: int = 0) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        number = trial.number if trial is not None else len(study.get_trials(deepcopy=False))
        return np.random.default_rng([self.seed, tag, number])

    def _configs(self, codes: np.ndarray) -> list[Config]:
        menu, names = self._structure.menu, self._structure.names
        return [self.space.config_from_params({n: menu[c] for n, c in zip(names, row)}) for row in codes]

    def _linearise_exact(self) -> dict[int, np.ndarray]:
        """Unary terms (D, F) of each exact objective around the all-``menu[0]`` configuration, for
        the DP only (its candidates are scored with the exact function)."""
        st = self._structure
        out = {}
        if not self._exact:
            return out
        base = np.zeros(st.n_decisions, dtype=np.int64)
        probes = [base]
        for d in range(st.n_decisions):
            for f in range(1, st.n_formats):
                row = base.copy()
                row[d] = f
                probes.append(row)
        values = self._exact_values(np.stack(probes))  # (n, M) minimisation-oriented
        for i in self._exact:
            unary = np.zeros((st.n_decisions, st.n_formats))
            unary[0, :] = values[0, i]
            k = 1
            for d in range(st.n_decisions):
                for f in range(1, st.n_formats):
                    unary[d, f] += values[k, i] - values[0, i]
                    k += 1
            out[i] = unary
        return out

    def _exact_values(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(codes), len(self.directions)))
        if not self._exact:
            return out
        for r, config in enumerate(self._configs(codes)):
            for i, func in self._exact.items():
                out[r, i] = self._sign[i] * float(func(config))
        return out

    def _observations(self, study: Any) -> Observations:
        from optuna.trial import TrialState

        st = self._structure
        index = {f: i for i, f in enumerate(st.menu)}
        sums: dict[tuple[int, ...], list] = {}
        pending: set[tuple[int, ...]] = set()
        failed: set[tuple[int, ...]] = set()
        trials = study.get_trials(deepcopy=False,
                                  states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING,
                                          TrialState.FAIL))
        for t in trials:
            try:
                key = tuple(index[t.params[name]] for name in st.names)
            except KeyError:
                continue  # not (yet) a full configuration of this space
            if t.state == TrialState.COMPLETE:
                if t.values is None or len(t.values) != len(self.directions):
                    raise InvalidSpecError(
                        f"trial {t.number} has {0 if t.values is None else len(t.values)} objective values but the "
                        f"layerwise sampler was built for {len(self.directions)} ({', '.join(self.directions)}): "
                        "build it with the study's directions")
                acc = sums.setdefault(key, [np.zeros(len(self.directions)), 0])
                acc[0] += np.asarray(t.values, dtype=float)
                acc[1] += 1
            elif t.state == TrialState.FAIL:
                failed.add(key)
            else:
                pending.add(key)
        keys = list(sums)
        d = st.n_decisions
        codes = np.array(keys, dtype=np.int64).reshape(len(keys), d)
        values = np.array([sums[k][0] / sums[k][1] for k in keys]).reshape(len(keys), len(self.directions)) * self._sign
        pend = np.array([k for k in pending if k not in sums], dtype=np.int64).reshape(-1, d)
        fail = np.array([k for k in failed if k not in sums and k not in pending], dtype=np.int64).reshape(-1, d)
        return Observations(codes, values, pend, fail)

    def _fit(self, obs: Observations, rng: np.random.Generator, n_samples: int) -> list[Posterior]:
        x = self._structure.design(obs.codes)
        ratio = self._settings["boundary_prior_ratio"]
        return [fit_blr(x, obs.values[:, i], self._structure, n_samples, rng, ratio) for i in self._modelled]

    def _predict(self, codes: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
        """Objective values (minimisation-oriented) of ``codes`` (C, D) under ``weights`` (one (S, p)
        array per modelled objective): (S, C, M)."""
        s = weights[0].shape[0] if weights else 1
        out = np.empty((s, len(codes), len(self.directions)))
        out[:] = self._exact_values(codes)[None]
        for w, i in zip(weights, self._modelled):
            out[:, :, i] = self._structure.predict(codes, w)
        return out

    def _dp_front(self, weights: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pareto-optimal configurations of the model with one weight vector per modelled objective,
        with their values (exact objectives re-evaluated exactly)."""
        st = self._structure
        m = len(self.directions)
        unary = np.zeros((st.n_decisions, st.n_formats, m))
        pair = np.zeros((max(st.n_decisions - 1, 0), st.n_formats, st.n_formats, m))
        for w, i in zip(weights, self._modelled):
            u, p = st.to_dp_terms(w[None, :])
            unary[:, :, i], pair[..., i] = u[..., 0], p[..., 0]
        for i, u in self._exact_unary.items():
            unary[:, :, i] = u
        codes, _ = pareto_dp(unary, pair, max_front=self._settings["max_front"], rng=rng)
        vals = self._predict(codes, [w[None, :] for w in weights])[0]
        return codes, vals

    def _reference(self, study: Any, obs: Observations, posts: list[Posterior]) -> np.ndarray:
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
        lo, hi = np.zeros(len(self.directions)), np.zeros(len(self.directions))
        for post, i in zip(posts, self._modelled):
            u, p = st.to_dp_terms(post.mean[None, :])
            lo[i], hi[i] = extreme_dp(u[..., 0], p[..., 0], False), extreme_dp(u[..., 0], p[..., 0], True)
        for i, u in self._exact_unary.items():
            lo[i], hi[i] = extreme_dp(u, None, False), extreme_dp(u, None, True)
        if len(obs.values):
            lo = np.minimum(lo, obs.values.min(axis=0))
            hi = np.maximum(hi, obs.values.max(axis=0))
        pad = np.maximum.reduce([(hi - lo) * 0.1, np.abs(hi) * 1e-9, np.full_like(hi, 1e-9)])
        return hi + pad

    @staticmethod
    def _hv(values: np.ndarray, ref: np.ndarray) -> float:
        import moocore

        inside = values[np.all(values < ref, axis=1)]
        return float(moocore.hypervolume(inside, ref=ref)) if len(inside) else 0.0

    def _startup_codes(self, index: int) -> np.ndarray | None:
        n = self._settings["n_startup_trials"]
        n = self._structure.n_formats if n is None else n
        if index >= n:
            return None
        f = self._structure.n_formats
        # Beyond len(menu) startup trials, cycle with a shift so rows stay distinct.
        return (self._startup_perms[index % f] + index // f) % f

    def _random_unseen(self, rng: np.random.Generator, seen: set[tuple[int, ...]], count: int) -> list[np.ndarray]:
        st = self._structure
        out = []
        for _ in range(count * 4):
            row = rng.integers(0, st.n_formats, st.n_decisions)
            if tuple(row) not in seen:
                out.append(row)
                seen = seen | {tuple(row)}
                if len(out) == count:
                    break
        return out

    def _propose(self, study: Any, trial: Any) -> np.ndarray:
        st = self._structure
        rng = self._rng(study, trial)
        obs = self._observations(study)
        seen = {tuple(r) for r in obs.codes} | {tuple(r) for r in obs.pending} | {tuple(r) for r in obs.failed}
        exhausted = len(seen) >= st.n_formats ** st.n_decisions
        start = self._startup_codes(len(obs.codes) + len(obs.pending))
        if start is not None and (tuple(start) not in seen or exhausted):
            return start
        if exhausted:  # every configuration is measured or running: a repeat is unavoidable
            return rng.integers(0, st.n_formats, st.n_decisions)

        s_count = self._settings["n_posterior_samples"]
        posts = self._fit(obs, rng, s_count)
        weights = [p.samples for p in posts]

        # Candidates: Pareto-DP fronts of a few posterior samples and of the posterior mean.
        pools = []
        for t in range(min(self._settings["n_thompson_fronts"], s_count)):
            pools.append(self._dp_front([w[t] for w in weights], rng)[0])
        mean_front = self._dp_front([p.mean for p in posts], rng)[0]
        pools.append(mean_front)
        cand = unseen_unique(np.concatenate(pools), seen)
        cap = self._settings["max_candidates"]
        if len(cand) > cap:
            cand = cand[rng.choice(len(cand), cap, replace=False)]
        if len(cand) < cap:
            # One-decision neighbours of the model's front and of the measured front, then random ones.
            fronts = [mean_front]
            if len(obs.codes):
                import moocore

                fronts.append(obs.codes[moocore.is_nondominated(obs.values)])
            extra = unseen_unique(neighbours(np.concatenate(fronts), st.n_formats), seen | {tuple(r) for r in cand})
            room = cap - len(cand)
            if len(extra) > room:
                extra = extra[rng.choice(len(extra), room, replace=False)]
            cand = np.concatenate([cand, extra]) if len(extra) else cand
            randoms = self._random_unseen(rng, seen | {tuple(r) for r in cand}, max(8, (cap - len(cand)) // 8))
            if randoms:
                cand = np.concatenate([cand, np.stack(randoms)])
        if not len(cand):
            return rng.integers(0, st.n_formats, st.n_decisions)

        ref = self._reference(study, obs, posts)
        # Running trials join the front at their predicted mean, so parallel workers spread out.
        front = obs.values
        if len(obs.pending):
            believed = self._predict(obs.pending, [p.mean[None, :] for p in posts])[0]
            front = np.concatenate([front, believed])
        pred = self._predict(cand, weights)  # (S, C, M)
        # What gets measured is the model's value plus the configuration's own non-additive part
        # (fixed per configuration, never averaged away): near-front configurations within that
        # band can still improve the front, and EHVI should see it.
        for post, i in zip(posts, self._modelled):
            pred[:, :, i] += rng.normal(0.0, 1.0, pred.shape[:2]) * post.noise[:, None]
        ehvi = mc_hvi(pred, front, ref).mean(axis=0)
        if ehvi.max() > 0:
            best = np.flatnonzero(ehvi >= ehvi.max() * (1 - 1e-9))
        else:
            # Nothing is expected to improve the front: measure where the model is least sure.
            spread = pred[:, :, self._modelled].std(axis=0) if self._modelled else np.zeros((len(cand), 1))
            scale = np.array([max(float(p.noise.mean()), 1e-12) for p in posts]) if posts else np.ones(1)
            score = (spread / scale).sum(axis=1)
            best = np.flatnonzero(score >= score.max() * (1 - 1e-9))
        return cand[best[rng.integers(len(best))]]
