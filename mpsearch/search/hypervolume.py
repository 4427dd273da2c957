"""Hypervolume of a front against a fixed reference point (moocore does the geometry).

Objectives may mix directions; ``directions`` gives "minimize"/"maximize" per column. Points that do
not strictly dominate the reference point add nothing (moocore ignores them).

The reference point of a study is fixed once and stored with it, so hypervolumes of the same study
over time, and of studies compared against it, are on one scale (:func:`reference_point`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float], directions: Sequence[str]) -> float:
    import moocore

    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return 0.0
    pts = pts.reshape(len(pts), -1)
    maximise = [d == "maximize" for d in directions]
    return float(moocore.hypervolume(pts, ref=np.asarray(reference, dtype=float), maximise=maximise))


def reference_point(values: Sequence[Sequence[float]], directions: Sequence[str], margin: float = 0.1) -> list[float]:
    """The nadir of ``values`` pushed out by ``margin`` of each objective's range (at least 1e-9),
    so the worst point still contributes a sliver of volume."""
    arr = np.asarray(values, dtype=float).reshape(len(values), -1)
    ref = []
    for j, d in enumerate(directions):
        lo, hi = float(arr[:, j].min()), float(arr[:, j].max())
        pad = max((hi - lo) * margin, abs(hi) * 1e-9, 1e-9)
        ref.append(hi + pad if d == "minimize" else lo - pad)
    return ref
