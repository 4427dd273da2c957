"""Pareto dynamic programs over decisions for additive (unary + consecutive-pair) objectives."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_MAX_FRONT = 20000


class DPFront(NamedTuple):
    codes: np.ndarray  # (K, D) the nondominated configurations
    values: np.ndarray  # (K, M) their objective values
    thinned: bool  # True: a state held more than max_front points and was thinned: not exact


def pareto_dp(unary: np.ndarray, pair: np.ndarray | None = None, *, max_front: int = DEFAULT_MAX_FRONT,
              rng: np.random.Generator | None = None, allowed: np.ndarray | None = None) -> DPFront:
    """Every Pareto-optimal configuration of an additive model, all objectives minimised.

    ``unary[d, f, m]``: objective m's term when decision d takes format f; ``pair[d, f, g, m]``: the
    extra term when decision d takes f and decision d+1 takes g (None or zeros: none).
    ``allowed[d, f]`` False: decision d never takes format f (it cannot run there).

    The DP keeps, for each format of the current decision, the nondominated partial sums with a
    back-pointer; a partial solution dominated within its state cannot complete to a Pareto-optimal
    one, so the result is exact unless a state exceeds ``max_front`` points. Then that state is
    thinned evenly along the first objective (extremes kept), the result is an approximation, and
    ``thinned`` says so.
    """
    import moocore

    unary = np.asarray(unary, dtype=float)
    n_dec, n_fmt, n_obj = unary.shape
    rng = rng or np.random.default_rng(0)
    allowed = np.ones((n_dec, n_fmt), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if not allowed.any(axis=1).all():
        raise ValueError("every decision needs at least one allowed format")
    coupled = [pair is not None and d < len(pair) and np.any(pair[d] != 0) for d in range(n_dec - 1)]
    thinned = False

    def prune(vals: np.ndarray) -> np.ndarray:
        nonlocal thinned
        keep = np.flatnonzero(moocore.is_nondominated(vals)) if len(vals) > 1 else np.arange(len(vals))
        if len(keep) > max_front:
            thinned = True
            if n_obj == 2:
                order = keep[np.argsort(vals[keep, 0], kind="stable")]
                keep = order[np.unique(np.linspace(0, len(order) - 1, max_front).round().astype(int))]
            else:
                extremes = {int(keep[np.argmin(vals[keep, m])]) for m in range(n_obj)}
                rest = np.setdiff1d(keep, list(extremes))
                keep = np.concatenate([list(extremes), rng.choice(rest, max_front - len(extremes), replace=False)])
        return keep

    empty = np.zeros((0, n_obj))
    none = np.zeros(0, dtype=np.int64)
    # states[f] = values (n, M); back[d][f] = (prev_format (n,), prev_index (n,))
    states = [unary[0, f][None, :] if allowed[0, f] else empty for f in range(n_fmt)]
    back: list[list[tuple[np.ndarray, np.ndarray]]] = [[(np.full(len(s), -1), np.full(len(s), -1)) for s in states]]
    for d in range(1, n_dec):
        new_states, new_back = [], []
        pf = np.concatenate([np.full(len(s), f) for f, s in enumerate(states)])
        pi = np.concatenate([np.arange(len(s)) for s in states])
        if not coupled[d - 1]:
            # No boundary term: every next format continues from one merged front.
            vals = np.concatenate(states)
            keep = prune(vals)
            vals, kf, ki = vals[keep], pf[keep], pi[keep]
            for g in range(n_fmt):
                new_states.append(vals + unary[d, g] if allowed[d, g] else empty)
                new_back.append((kf, ki) if allowed[d, g] else (none, none))
        else:
            for g in range(n_fmt):
                if not allowed[d, g]:
                    new_states.append(empty)
                    new_back.append((none, none))
                    continue
                vals = np.concatenate([s + pair[d - 1, f, g] for f, s in enumerate(states)]) + unary[d, g]
                keep = prune(vals)
                new_states.append(vals[keep])
                new_back.append((pf[keep], pi[keep]))
        states, back = new_states, back + [new_back]
    vals = np.concatenate(states)
    cur_f = np.concatenate([np.full(len(s), f) for f, s in enumerate(states)])
    cur_i = np.concatenate([np.arange(len(s)) for s in states])
    keep = prune(vals)
    vals, cur_f, cur_i = vals[keep], cur_f[keep], cur_i[keep]
    codes = np.zeros((len(vals), n_dec), dtype=np.int64)
    for d in range(n_dec - 1, -1, -1):
        codes[:, d] = cur_f
        prev_f = np.empty_like(cur_f)
        prev_i = np.empty_like(cur_i)
        for f in range(n_fmt):
            sel = cur_f == f
            pf, pi = back[d][f]
            prev_f[sel], prev_i[sel] = pf[cur_i[sel]], pi[cur_i[sel]]
        cur_f, cur_i = prev_f, prev_i
    return DPFront(codes, vals, thinned)


def extreme_dp(unary: np.ndarray, pair: np.ndarray | None, worst: bool, allowed: np.ndarray | None = None) -> float:
    """The minimum (or maximum, ``worst``) of one additive objective over the space (Viterbi),
    over the formats ``allowed`` (D, F) only."""
    pick = np.max if worst else np.min
    off = np.inf if not worst else -np.inf
    unary = np.asarray(unary, dtype=float)
    if allowed is not None:
        unary = np.where(allowed, unary, off)
    best = unary[0].copy()
    for d in range(1, len(unary)):
        trans = best[:, None] + (pair[d - 1] if pair is not None and len(pair) else 0.0)
        best = pick(trans, axis=0) + unary[d]
    return float(pick(best))
