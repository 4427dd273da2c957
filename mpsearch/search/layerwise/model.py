"""Bayesian linear regression of one objective on the layer-additive features, with prior scales and
noise averaged over a grid by marginal likelihood, and pathwise posterior samples."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpsearch.search.layerwise.features import Structure

# Prior scales, × 1/sqrt(number of decisions), in units of the objective's standard deviation; the
# combination with the highest marginal likelihood is used.
_OP_SCALES = (0.1, 0.3, 1.0, 3.0)
_UNARY_SCALES = (0.01, 0.1, 0.3, 1.0)
_BOUNDARY_RATIOS = (0.03, 0.1, 0.3)
_NOISE_SCALES = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3)
_INTERCEPT_SCALE = 3.0
_ROBUST_MIN_N = 10  # measurements before outliers are down-weighted
_ROBUST_CUT = 2.5  # leave-one-out errors beyond this many robust standard deviations are outliers
_SHAPE_SCALE = 10.0  # broad: the cost per FLOP / element of a format is learnt from the data


@dataclass
class Posterior:
    """Posterior of one objective's weights, in the objective's raw units (minimisation sign)."""

    mean: np.ndarray  # (p,)
    samples: np.ndarray  # (S, p)
    noise: np.ndarray  # (S,) standard deviation of the non-additive residual per sample, raw units
    hyper: tuple[float, ...]  # the likeliest (op scale, boundary ratio, unary scale, noise), standardised
    loo_rms: float = math.inf  # RMS leave-one-out prediction error, raw units (inf without data)


def fit_blr(x: np.ndarray, y: np.ndarray, structure: Structure, n_samples: int, rng: np.random.Generator,
             boundary_ratio: float | None) -> Posterior:
    """Bayesian linear regression with the prior scales and noise picked by marginal likelihood."""
    from scipy.linalg import cho_factor, cho_solve

    n, p = x.shape
    y_mean = float(y.mean()) if n else 0.0
    y_std = float(y.std()) if n > 1 else 0.0
    if not y_std > 1e-12 * max(1.0, abs(y_mean)):
        y_std = max(abs(y_mean), 1.0)  # too few distinct values to scale by: use the magnitude
    z = (y - y_mean) / y_std
    masks = structure.blocks()
    base = 1.0 / math.sqrt(max(structure.n_decisions, 1))
    ratios = (boundary_ratio,) if boundary_ratio is not None else (_BOUNDARY_RATIOS if masks["out"].any() else (0.0,))

    def prior_var(so: float, ratio: float, su: float) -> np.ndarray:
        var = np.zeros(p)
        var[masks["intercept"]] = _INTERCEPT_SCALE ** 2
        var[masks["shape"]] = _SHAPE_SCALE ** 2
        var[masks["op"]] = (so * base) ** 2
        var[masks["out"]] = (so * base * ratio) ** 2
        var[masks["unary"]] = (su * base) ** 2
        return var  # "null" stays 0: that weight is exactly 0

    inflate = np.ones(n)  # per-measurement noise multiplier (variance); > 1 for outliers

    def kernel(so: float, ratio: float, su: float, sn: float) -> np.ndarray:
        return fixed + (so * base) ** 2 * (gram["op"] + ratio ** 2 * gram["out"]) \
            + (su * base) ** 2 * gram["unary"] + sn ** 2 * np.diag(inflate)

    if not n:  # no data: the prior
        hyper = (1.0, ratios[len(ratios) // 2], 1.0, _NOISE_SCALES[-1])
        samples = rng.standard_normal((n_samples, p)) * np.sqrt(prior_var(*hyper[:3]))
        return to_raw(np.zeros(p), samples, np.full(n_samples, hyper[3]), hyper, y_mean, y_std)

    # K = X diag(v) X^T + s^2 I; each block's Gram matrix is computed once.
    gram = {name: x[:, m] @ x[:, m].T for name, m in masks.items()}
    fixed = _INTERCEPT_SCALE ** 2 * gram["intercept"] + _SHAPE_SCALE ** 2 * gram["shape"]
    def search() -> tuple[list, np.ndarray]:
        grid, lmls = [], []
        for so in _OP_SCALES:
            for ratio in ratios:
                for su in _UNARY_SCALES:
                    for sn in _NOISE_SCALES:
                        try:
                            c = cho_factor(kernel(so, ratio, su, sn), lower=True)
                        except np.linalg.LinAlgError:
                            continue
                        lmls.append(-0.5 * z @ cho_solve(c, z) - np.log(np.diag(c[0])).sum())
                        grid.append((so, ratio, su, sn))
        return grid, np.array(lmls)

    def leave_one_out(hyper: tuple) -> np.ndarray:
        # Closed form: [K^-1 z]_i / [K^-1]_ii, the error of predicting measurement i from the others.
        kinv = cho_solve(cho_factor(kernel(*hyper), lower=True), np.eye(n))
        return (kinv @ z) / np.diag(kinv)

    grid, lmls = search()
    if n >= _ROBUST_MIN_N:
        # One robust reweighting (Huber-like): a measurement far off what the others predict (a
        # timing outlier: the recorded mlp6 data has configurations 10 % off any additive fit) gets
        # a larger noise variance, so it stops dragging the per-format weights every other
        # prediction rests on; it still counts as measured at its own value.
        loo = leave_one_out(grid[int(np.argmax(lmls))])
        scale = 1.4826 * np.median(np.abs(loo))
        if scale > 0:
            inflate = np.maximum(1.0, (np.abs(loo) / (_ROBUST_CUT * scale)) ** 2)
            if np.any(inflate > 1.0):
                grid, lmls = search()
    # Average over the grid weighted by marginal likelihood (a flat prior on the grid) instead of
    # taking its best point: with few measurements the best point is overconfident (a tiny noise
    # fits 3 points exactly), and front_confidence would stop a search far too early.
    weights = np.exp(lmls - lmls.max())
    weights /= weights.sum()
    picks = rng.choice(len(grid), n_samples, p=weights)
    order = np.argsort(-weights)
    keep = order[: int(np.searchsorted(np.cumsum(weights[order]), 0.999)) + 1]
    mean = np.zeros(p)
    samples = np.zeros((n_samples, p))
    noise = np.zeros(n_samples)
    for g in np.union1d(keep, picks):
        so, ratio, su, sn = grid[g]
        c = cho_factor(kernel(so, ratio, su, sn), lower=True)
        var = prior_var(so, ratio, su)
        xv = x * var  # X diag(v), (n, p)
        if g in keep:
            mean += weights[g] / weights[keep].sum() * (xv.T @ cho_solve(c, z))
        rows = np.flatnonzero(picks == g)
        if len(rows):
            # Matheron's rule: a prior draw corrected by the data gives an exact posterior draw.
            w0 = rng.standard_normal((len(rows), p)) * np.sqrt(var)
            eps = rng.standard_normal((len(rows), n)) * sn * np.sqrt(inflate)
            resid = z[None, :] - w0 @ x.T - eps
            samples[rows] = w0 + (xv.T @ cho_solve(c, resid.T)).T
            noise[rows] = sn
    hyper = grid[int(np.argmax(weights))]
    # Leave-one-out errors of the likeliest model: how far off a prediction for a configuration
    # not in the data is, residual and model error together.
    loo = leave_one_out(hyper)
    loo_rms = float(np.sqrt(np.mean(loo ** 2)))
    return to_raw(mean, samples, noise, hyper, y_mean, y_std, loo_rms)


def to_raw(mean: np.ndarray, samples: np.ndarray, noise: np.ndarray, hyper: tuple, y_mean: float,
            y_std: float, loo_rms: float = np.inf) -> Posterior:
    """Back from standardised units: y = y_mean + y_std * (X w)."""
    mean, samples = mean * y_std, samples * y_std
    mean[0] += y_mean
    samples[:, 0] += y_mean
    return Posterior(mean, samples, noise * y_std, hyper, loo_rms * y_std)
