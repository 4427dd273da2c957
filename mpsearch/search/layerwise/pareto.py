"""Pareto dynamic programs over decisions for additive (unary + consecutive-pair) objectives."""

from __future__ import annotations

import numpy as np

def pareto_dp(unary: np.ndarray, pair: np.ndarray | None = None, *, max_front: int = 1500,
              rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every Pareto-optimal configuration of an additive model, all objectives minimised.

    ``unary[d, f, m]``: objective m's term when decision d takes format f; ``pair[d, f, g, m]``: the
    extra term when decision d takes f and decision d+1 takes g (None or zeros: none). Returns
    (codes (K, D), values (K, M)), the nondominated configurations and their objective values.

    The DP keeps, for each format of the current decision, the nondominated partial sums with a
    back-pointer; a partial solution dominated within its state cannot complete to a Pareto-optimal
    one, so the result is exact unless a state exceeds ``max_front`` points, in which case it is
    thinned evenly along the first objective (extremes kept) and the result is an approximation.
    """
    import moocore

    unary = np.asarray(unary, dtype=float)
    n_dec, n_fmt, n_obj = unary.shape
    rng = rng or np.random.default_rng(0)
    coupled = [pair is not None and d < len(pair) and np.any(pair[d] != 0) for d in range(n_dec - 1)]

    def prune(vals: np.ndarray) -> np.ndarray:
        keep = np.flatnonzero(moocore.is_nondominated(vals)) if len(vals) > 1 else np.arange(len(vals))
        if len(keep) > max_front:
            if n_obj == 2:
                order = keep[np.argsort(vals[keep, 0], kind="stable")]
                keep = order[np.unique(np.linspace(0, len(order) - 1, max_front).round().astype(int))]
            else:
                extremes = {int(keep[np.argmin(vals[keep, m])]) for m in range(n_obj)}
                rest = np.setdiff1d(keep, list(extremes))
                keep = np.concatenate([list(extremes), rng.choice(rest, max_front - len(extremes), replace=False)])
        return keep

    # states[f] = values (n, M); back[d][f] = (prev_format (n,), prev_index (n,))
    states = [unary[0, f][None, :] for f in range(n_fmt)]
    back: list[list[tuple[np.ndarray, np.ndarray]]] = [[(np.full(1, -1), np.full(1, -1)) for _ in range(n_fmt)]]
    for d in range(1, n_dec):
        new_states, new_back = [], []
        if not coupled[d - 1]:
            # No boundary term: every next format continues from one merged front.
            vals = np.concatenate(states)
            pf = np.concatenate([np.full(len(s), f) for f, s in enumerate(states)])
            pi = np.concatenate([np.arange(len(s)) for s in states])
            keep = prune(vals)
            vals, pf, pi = vals[keep], pf[keep], pi[keep]
            for g in range(n_fmt):
                new_states.append(vals + unary[d, g])
                new_back.append((pf, pi))
        else:
            for g in range(n_fmt):
                vals = np.concatenate([s + pair[d - 1, f, g] for f, s in enumerate(states)]) + unary[d, g]
                pf = np.concatenate([np.full(len(s), f) for f, s in enumerate(states)])
                pi = np.concatenate([np.arange(len(s)) for s in states])
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
    return codes, vals


def extreme_dp(unary: np.ndarray, pair: np.ndarray | None, worst: bool) -> float:
    """The minimum (or maximum, ``worst``) of one additive objective over the space (Viterbi)."""
    pick = np.max if worst else np.min
    best = unary[0].copy()
    for d in range(1, len(unary)):
        trans = best[:, None] + (pair[d - 1] if pair is not None and len(pair) else 0.0)
        best = pick(trans, axis=0) + unary[d]
    return float(pick(best))
