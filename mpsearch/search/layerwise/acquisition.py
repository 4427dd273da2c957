"""Candidates and what ranks them: configurations near measured ones, hypervolume improvement
(exact and vectorised for two objectives, moocore beyond), and a constrained expected improvement."""

from __future__ import annotations

import numpy as np


def unseen_unique(codes: np.ndarray, seen: set[tuple[int, ...]]) -> np.ndarray:
    """The distinct rows of ``codes`` not in ``seen``, in their first order."""
    if not len(codes):
        return codes
    keys = set()
    seen_keys = {np.asarray(row, dtype=np.int64).tobytes() for row in seen}
    keep = []
    for i, key in enumerate(np.ascontiguousarray(codes, dtype=np.int64)):
        b = key.tobytes()
        if b not in keys and b not in seen_keys:
            keys.add(b)
            keep.append(i)
    return codes[keep]


def neighbours(codes: np.ndarray, n_formats: int) -> np.ndarray:
    """Every configuration one decision away from a row of ``codes``."""
    out = []
    for d in range(codes.shape[1]):
        for shift in range(1, n_formats):
            moved = codes.copy()
            moved[:, d] = (moved[:, d] + shift) % n_formats
            out.append(moved)
    return np.concatenate(out) if out else codes


def mutations(codes: np.ndarray, n_formats: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random configurations two to four decisions away from random rows of ``codes``:
    where the model's fronts and one-decision moves miss an interaction, a few steps further may not."""
    if not len(codes) or count <= 0:
        return np.zeros((0, codes.shape[1]), dtype=np.int64)
    out = codes[rng.integers(len(codes), size=count)].copy()
    n_dec = codes.shape[1]
    for row in out:
        moved = rng.choice(n_dec, size=min(n_dec, int(rng.integers(2, 5))), replace=False)
        row[moved] = (row[moved] + rng.integers(1, n_formats, size=len(moved))) % n_formats
    return out


def recombinations(codes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` crossovers of two random rows of ``codes``: one contiguous run of decisions from
    the second parent (layers next to each other interact most), the rest from the first."""
    if len(codes) < 2 or count <= 0:
        return np.zeros((0, codes.shape[1]), dtype=np.int64)
    n_dec = codes.shape[1]
    first = codes[rng.integers(len(codes), size=count)]
    second = codes[rng.integers(len(codes), size=count)]
    start = rng.integers(0, n_dec, size=count)
    length = rng.integers(1, max(n_dec // 2, 1) + 1, size=count)
    cols = np.arange(n_dec)[None, :]
    take = (cols >= start[:, None]) & (cols < (start + length)[:, None])
    return np.where(take, second, first)


def hv_improvement(points: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume improvement of each point of ``points`` (..., M) alone over ``front`` (K, M), all
    objectives minimised, against ``ref``.

    Two objectives: exact and vectorised (the region a point adds is a sum of strips under the
    front's staircase). More: one moocore call per point that the front does not dominate."""
    shape = points.shape[:-1]
    pts = points.reshape(-1, points.shape[-1])
    front = front[np.all(front < ref, axis=1)] if len(front) else front
    if pts.shape[1] == 2:
        return _hvi_2d(pts, front, ref).reshape(shape)
    import moocore

    out = np.zeros(len(pts))
    if len(front):
        front = front[moocore.is_nondominated(front)]
        base = float(moocore.hypervolume(front, ref=ref))
        dominated = np.all(front[None, :, :] <= pts[:, None, :], axis=2).any(axis=1)
    else:
        base, dominated = 0.0, np.zeros(len(pts), dtype=bool)
    useful = ~dominated & np.all(pts < ref, axis=1)
    for i in np.flatnonzero(useful):
        together = np.concatenate([front, pts[i][None, :]]) if len(front) else pts[i][None, :]
        out[i] = float(moocore.hypervolume(together, ref=ref)) - base
    return out.reshape(shape)


def _hvi_2d(pts: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    if len(front):
        import moocore

        front = front[moocore.is_nondominated(front)]
        front = front[np.argsort(front[:, 0], kind="stable")]  # the second objective then falls
    # Strip j spans [edges[j], edges[j+1]) in the first objective; below the front's staircase up
    # to levels[j] in the second, what a point (a, b) adds there is (overlap) × (levels[j] - b).
    edges = np.concatenate([[-np.inf], front[:, 0], [ref[0]]])
    levels = np.concatenate([[ref[1]], front[:, 1]])
    left = np.maximum(edges[None, :-1], pts[:, :1])
    right = np.minimum(edges[None, 1:], ref[0])
    width = np.clip(right - left, 0.0, None)
    height = np.clip(np.minimum(levels[None, :], ref[1]) - pts[:, 1:2], 0.0, None)
    return (width * height).sum(axis=1)


def constrained_improvement(pred: np.ndarray, best: float, target: int, satisfied: np.ndarray) -> np.ndarray:
    """Expected improvement of objective ``target`` (minimised) over ``best`` counting only the
    posterior samples in which the constraints hold: ``pred`` (S, C, M), ``satisfied`` (S, C) bool;
    (C,). With no feasible measurement yet (``best`` infinite), the probability the constraints
    hold."""
    if not np.isfinite(best):
        return satisfied.mean(axis=0)
    gain = np.clip(best - pred[:, :, target], 0.0, None)
    return (gain * satisfied).mean(axis=0)
