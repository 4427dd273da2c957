"""Candidate helpers and the Monte Carlo hypervolume improvement the proposals are ranked by."""

from __future__ import annotations

import numpy as np


def unseen_unique(codes: np.ndarray, seen: set[tuple[int, ...]]) -> np.ndarray:
    if not len(codes):
        return codes
    codes = np.unique(codes, axis=0)
    keep = [i for i, row in enumerate(codes) if tuple(row) not in seen]
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


def mc_hvi(pred: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume improvement of each candidate under each posterior sample, (S, C).

    A candidate that a front point weakly dominates, or that does not beat the reference point,
    improves nothing; only the others go to moocore (one small call each)."""
    import moocore

    s, c, m = pred.shape
    out = np.zeros((s, c))
    front = front[np.all(front < ref, axis=1)]
    if len(front):
        front = front[moocore.is_nondominated(front)]
        base = float(moocore.hypervolume(front, ref=ref))
        dominated = np.all(front[None, None, :, :] <= pred[:, :, None, :], axis=3).any(axis=2)
    else:
        base = 0.0
        dominated = np.zeros((s, c), dtype=bool)
    useful = ~dominated & np.all(pred < ref, axis=2)
    for si, ci in zip(*np.nonzero(useful)):
        pts = np.concatenate([front, pred[si, ci][None, :]]) if len(front) else pred[si, ci][None, :]
        out[si, ci] = float(moocore.hypervolume(pts, ref=ref)) - base
    return out
