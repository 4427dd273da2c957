"""One proposal: candidates from the model's Pareto fronts and from around the measured front,
screened cheaply, then ranked by Monte Carlo expected hypervolume improvement (or, under
constraints, by the expected improvement of the best feasible configuration), times the
probability that the configuration runs at all."""

from __future__ import annotations

from typing import Any

import numpy as np

from mpsearch.search.layerwise.acquisition import (constrained_improvement, hv_improvement, mutations, neighbours,
                                                   recombinations, unseen_unique)

_LOCAL_SHARE = 0.5  # of max_candidates: mutations and recombinations of the measured front
_RANDOM = 16
_OPTIMISM = 2.0  # screening also asks what a candidate adds if it comes out this many noise sd better


def propose(sampler: Any, study: Any, trial: Any) -> np.ndarray:
    st = sampler.structure
    rng = sampler.rng(study, trial)
    obs = sampler.observations(study)
    seen = {tuple(r) for part in (obs.codes, obs.pending, obs.failed, obs.refused) for r in part}
    exhausted = len(seen) >= st.n_formats ** st.n_decisions
    start = sampler._startup_codes(len(obs.codes) + len(obs.pending))
    if start is not None and (tuple(start) not in seen or exhausted):
        return start
    if exhausted:  # every configuration is measured or running: a repeat is unavoidable
        return rng.integers(0, st.n_formats, st.n_decisions)

    feasibility = sampler.feasibility(obs)
    allowed = feasibility.allowed
    settings = sampler._settings
    posts = sampler.fit(obs, rng, settings["n_posterior_samples"])
    cand, thompson = _candidates(sampler, obs, posts, allowed, seen, rng)
    if not len(cand):
        return _random_allowed(rng, allowed)

    constraints = sampler.constraints(study)
    sign = sampler._sign
    target = next((i for i in range(len(sign)) if i not in {j for j, _ in constraints}), 0)

    def satisfied(pred: np.ndarray) -> np.ndarray:  # pred (..., M) minimisation-oriented
        ok = np.ones(pred.shape[:-1], dtype=bool)
        for i, c in constraints:
            ok &= c.violation(pred[..., i] * sign[i]) <= 0
        return ok

    believed = sampler.predict_mean(obs.pending, posts)[0] if len(obs.pending) else np.zeros((0, len(sign)))
    if constraints:
        known = np.concatenate([obs.values, believed])
        ok = satisfied(known)
        best = float(known[ok, target].min()) if ok.any() else np.inf

        def gain(pred: np.ndarray) -> np.ndarray:
            return constrained_improvement(pred, best, target, satisfied(pred))
    else:
        ref = sampler.reference(study, obs, posts)
        # Running trials join the front at their predicted mean ("believers"), so k workers asking
        # at once get k different proposals that do not chase one improvement.
        front = np.concatenate([obs.values, believed])

        def gain(pred: np.ndarray) -> np.ndarray:
            return hv_improvement(pred, front, ref).mean(axis=0)

    # Screening: what each candidate adds under the posterior mean, a little better than the mean
    # (by its noise), and under each Thompson sample. Each criterion sends its best share, so one
    # wild posterior sample cannot crowd out the mean's picks. Cheap, and it keeps EHVI's Monte
    # Carlo for the few hundred candidates that matter.
    cap = settings["max_candidates"]
    if len(cand) > cap:
        stacked = [np.stack([p.mean, *(w[k] for w in thompson)]) for k, p in enumerate(posts)] if posts else None
        draws = sampler.predict_mean(cand, posts, stacked)  # (1 + T, C, M): the mean, then each sample
        optimistic = draws[:1].copy()
        for post, i in zip(posts, sampler.modelled):
            optimistic[..., i] -= _OPTIMISM * float(np.mean(post.noise))
        scores = [gain(optimistic)] + [gain(d[None]) for d in draws]
        share = max(cap // len(scores), 1)
        picked: list[int] = []
        for score in scores:
            order = np.argsort(-score, kind="stable")
            picked.extend(order[score[order] > 0][:share])
        useful = np.unique(np.asarray(picked, dtype=np.int64))
        if len(useful) < cap:  # room left: a random share of the rest, for exploration
            rest = np.setdiff1d(np.arange(len(cand)), useful)
            useful = np.concatenate([useful, rng.permutation(rest)[: cap - len(useful)]])
        cand = cand[np.sort(useful)]

    pred = sampler.predict_samples(cand, posts, rng)  # (S, C, M)
    runs = feasibility.probability(cand)
    value = gain(pred) * runs
    if value.max() > 0:
        best_rows = np.flatnonzero(value >= value.max() * (1 - 1e-9))
    else:
        # Nothing is expected to improve: measure where the model is least sure (and likely to run).
        modelled = sampler.modelled
        spread = pred[:, :, modelled].std(axis=0) if modelled else np.zeros((len(cand), 1))
        scale = np.array([max(float(p.noise.mean()), 1e-12) for p in posts]) if posts else np.ones(1)
        score = (spread / scale).sum(axis=1) * runs
        best_rows = np.flatnonzero(score >= score.max() * (1 - 1e-9))
    return cand[best_rows[rng.integers(len(best_rows))]]


def _candidates(sampler: Any, obs: Any, posts: list, allowed: np.ndarray, seen: set, rng: np.random.Generator):
    """Unseen configurations worth ranking, and the Thompson weight vectors used (for screening)."""
    st = sampler.structure
    settings = sampler._settings
    n_fronts = min(settings["n_thompson_fronts"], settings["n_posterior_samples"])
    thompson = [[p.samples[t] for p in posts] for t in range(n_fronts)]
    pools = [sampler.dp_front(w, rng, allowed) for w in thompson]
    pools.append(sampler.dp_front([p.mean for p in posts], rng, allowed))
    cap = settings["max_candidates"]
    if len(obs.codes):
        import moocore

        measured_front = obs.codes[moocore.is_nondominated(obs.values)]
        near = neighbours(measured_front, st.n_formats)
        if len(near) > 4 * cap:
            near = near[rng.choice(len(near), 4 * cap, replace=False)]
        local = int(cap * _LOCAL_SHARE)
        pools += [near, mutations(measured_front, st.n_formats, local // 2, rng),
                  recombinations(measured_front, local - local // 2, rng)]
    pools.append(rng.integers(0, st.n_formats, (_RANDOM, st.n_decisions)))
    cand = unseen_unique(np.concatenate([p.reshape(-1, st.n_decisions) for p in pools]).astype(np.int64), seen)
    rows = np.arange(st.n_decisions)
    cand = cand[allowed[rows, cand].all(axis=1)] if len(cand) else cand
    return cand, thompson


def _random_allowed(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    return np.array([rng.choice(np.flatnonzero(row)) for row in allowed], dtype=np.int64)
