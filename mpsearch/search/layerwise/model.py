"""One objective's model: the layer-additive Bayesian linear regression on :class:`Structure`'s
features, plus a Gaussian-process part for what is not additive.

In kernel form, with z the standardised measurements::

    cov(z_i, z_j) = x_i diag(v) x_j  +  r² corr(c_i, c_j)  +  s² [i = j] inflate_i

The first term is the additive model (v: each weight block's prior variance); the second, a
non-additive part whose correlation falls either with the number of decisions two configurations
differ in (interacting layers, a product), with the distance between their format mixes, or with
the distance between their effective bits (a global effect: accuracy that drops below a total bit
budget) (:func:`correlation`); the third, noise. The prior
scales, the residual's scale and rate, and the noise are averaged over a grid, weighted by marginal
likelihood and a prior that gives "no non-additive part" half the mass, so purely additive data
keeps the additive model. The grid is searched in two stages (additive scales first, then the
non-additive part around the best of them); a caller may pass the hyperparameters kept by an earlier
fit, and only those are re-weighted: the search's n³ cost is then paid for a few grid points, not
hundreds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mpsearch.search.layerwise.features import Structure

# Prior scales, × 1/sqrt(number of decisions), in units of the objective's standard deviation.
_OP_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
_UNARY_SCALES = (0.001, 0.01, 0.1, 0.3, 1.0)
_BOUNDARY_RATIOS = (0.03, 0.1, 0.3)
_NOISE_SCALES = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3)
_RESIDUAL_SCALES = (0.03, 0.1, 0.3, 1.0)  # the non-additive part's standard deviation (standardised)
# The non-additive part's correlations (see :func:`correlation`), each with its grid of rates.
# Decisions: exp(-rate) between configurations differing everywhere. Format mix and effective bits:
# exp(-rate · squared distance). Effective bits move little per decision (mlp6's smallest layer in
# fp8 instead of fp16 moves them by 0.008), so only large rates can represent a cliff there; a
# smooth function of them only repeats the additive part's per-format costs (and cost mlp6 measurements).
_RESIDUAL_RATES = {"decisions": (1.0, 4.0, 16.0), "mix": (1.0, 4.0, 16.0), "bits": (256.0, 4096.0)}
_RESIDUAL_AROUND = 3  # additive scale combinations the non-additive grid is searched around
_NO_RESIDUAL_PRIOR = 0.5  # prior mass of "the objective is additive"
_RESIDUAL_MIN_N = 6  # measurements before a non-additive part is considered
_KEEP_MASS = 0.999  # grid points kept (for the posterior and the next fit's cache): this much weight
_KEEP_MAX = 12
_INTERCEPT_SCALE = 3.0
_ROBUST_MIN_N = 10  # measurements before outliers are down-weighted
_ROBUST_CUT = 2.5  # leave-one-out errors beyond this many robust standard deviations are outliers
_SHAPE_SCALE = 10.0  # broad: the cost per FLOP / element of a format is learnt from the data


def cho_factor(k: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor L of the symmetric positive definite ``k`` (LinAlgError if it is not)."""
    return np.linalg.cholesky(k)


def _lower_solve(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L⁻¹ b for a lower-triangular L. numpy has no triangular solver; a general solve is exact
    here and costs O(n³) for n measurements (a few hundred at most), which stays in milliseconds."""
    return np.linalg.solve(lower, b)


def cho_solve(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """K⁻¹ b given K's lower Cholesky factor (:func:`cho_factor`): two triangular solves."""
    return np.linalg.solve(lower.T, _lower_solve(lower, b))


@dataclass(frozen=True)
class Hyper:
    """One grid point (standardised units): op prior scale, boundary/op ratio, unary scale, noise,
    non-additive scale (0: none) and rate."""

    op: float
    ratio: float
    unary: float
    noise: float
    residual: float = 0.0
    rate: float = 1.0
    kind: str = "decisions"  # the non-additive part's correlation: "decisions", "mix" or "bits"


def correlation(h: Hyper, a: np.ndarray, b: np.ndarray, structure: Structure) -> np.ndarray:
    """The non-additive part's correlation between configurations given as one-hot rows ``a`` (n, D·F)
    and ``b`` (m, D·F): over the decisions they differ in (interacting layers); over their *format
    mix*, the share of the network's FLOPs and elements in each format; or over their *effective
    bits*, the FLOP-, activation- and weight-weighted mean operand width (what a global effect
    depends on, such as accuracy falling below a total bit budget: configurations with the same
    effective bits then share the effect exactly, whichever 8-bit format each layer uses)."""
    if h.kind != "decisions":
        embed = structure.format_mix if h.kind == "mix" else structure.effective_bits
        ua, ub = embed(a), embed(b)
        d2 = (ua ** 2).sum(1)[:, None] + (ub ** 2).sum(1)[None, :] - 2 * ua @ ub.T
        return np.exp(-h.rate * np.maximum(d2, 0.0))
    d = max(structure.n_decisions, 1)
    return np.exp(-h.rate * (d - a @ b.T) / d)


@dataclass
class Residual:
    """The non-additive part's posterior at configurations not measured (raw units)."""

    onehot: np.ndarray  # (n, D·F) the measured configurations
    structure: Structure
    y_std: float
    parts: list  # (weight, Hyper, K⁻¹z (n,), Cholesky factor of K)

    def mean_std(self, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the non-additive part of each row of ``onehot``
        (C, D·F); a mixture over the kept grid points."""
        first = np.zeros(len(onehot))
        second = np.zeros(len(onehot))
        for weight, h, alpha, chol in self.parts:
            cross = h.residual ** 2 * correlation(h, onehot, self.onehot, self.structure)
            mean = cross @ alpha
            var = h.residual ** 2 - np.einsum("cn,nc->c", cross, cho_solve(chol, cross.T))
            first += weight * mean
            second += weight * (np.maximum(var, 0.0) + mean ** 2)
        std = np.sqrt(np.maximum(second - first ** 2, 0.0))
        return first * self.y_std, std * self.y_std


@dataclass
class Posterior:
    """Posterior of one objective, in the objective's raw units (minimisation sign)."""

    mean: np.ndarray  # (p,) additive weights
    samples: np.ndarray  # (S, p) additive weights, one posterior draw each
    noise: np.ndarray  # (S,) noise standard deviation per sample
    hyper: Hyper  # the likeliest grid point
    loo_rms: float = math.inf  # RMS leave-one-out prediction error (inf without data)
    # Each measurement's leave-one-out error (measured - predicted from the others), raw units: how
    # far off a prediction for a configuration not in the data has been, outliers included.
    loo_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual: Residual | None = None  # None: every kept grid point is additive
    kept: tuple[Hyper, ...] = ()  # grid points with weight: a later fit may re-weight only these


def fit(x: np.ndarray, onehot: np.ndarray, y: np.ndarray, structure: Structure, n_samples: int,
        rng: np.random.Generator, boundary_ratio: float | None, cached: tuple[Hyper, ...] = ()) -> Posterior:
    """The posterior of one objective given the design ``x`` (n, p), the configurations' one-hot codes
    (n, D·F) and the measurements ``y`` (n,). ``cached``: re-weight only these grid points."""
    n, p = x.shape
    y_mean = float(y.mean()) if n else 0.0
    y_std = float(y.std()) if n > 1 else 0.0
    if not y_std > 1e-12 * max(1.0, abs(y_mean)):
        y_std = max(abs(y_mean), 1.0)  # too few distinct values to scale by: use the magnitude
    z = (y - y_mean) / y_std
    masks = structure.blocks()
    base = 1.0 / math.sqrt(max(structure.n_decisions, 1))
    ratios = (boundary_ratio,) if boundary_ratio is not None else (_BOUNDARY_RATIOS if masks["out"].any() else (0.0,))

    def prior_var(h: Hyper) -> np.ndarray:
        var = np.zeros(p)
        var[masks["intercept"]] = _INTERCEPT_SCALE ** 2
        var[masks["shape"]] = _SHAPE_SCALE ** 2
        var[masks["op"]] = (h.op * base) ** 2
        var[masks["out"]] = (h.op * base * h.ratio) ** 2
        var[masks["unary"]] = (h.unary * base) ** 2
        return var  # "null" stays 0: that weight is exactly 0

    if not n:  # no data: the prior
        h = Hyper(1.0, ratios[len(ratios) // 2], 1.0, _NOISE_SCALES[-1])
        samples = rng.standard_normal((n_samples, p)) * np.sqrt(prior_var(h))
        return _to_raw(np.zeros(p), samples, np.full(n_samples, h.noise), h, y_mean, y_std)

    inflate = np.ones(n)  # per-measurement noise multiplier (variance); > 1 for outliers
    # K's blocks, each computed once.
    gram = {name: x[:, m] @ x[:, m].T for name, m in masks.items()}
    fixed = _INTERCEPT_SCALE ** 2 * gram["intercept"] + _SHAPE_SCALE ** 2 * gram["shape"]
    correlations: dict[tuple, np.ndarray] = {}

    def residual_cov(h: Hyper) -> np.ndarray:
        if h.residual == 0:
            return 0.0
        if (h.rate, h.kind) not in correlations:
            correlations[(h.rate, h.kind)] = correlation(h, onehot, onehot, structure)
        return h.residual ** 2 * correlations[(h.rate, h.kind)]

    def kernel(h: Hyper) -> np.ndarray:
        return fixed + (h.op * base) ** 2 * (gram["op"] + h.ratio ** 2 * gram["out"]) \
            + (h.unary * base) ** 2 * gram["unary"] + residual_cov(h) + h.noise ** 2 * np.diag(inflate)

    def log_evidence(points: list[Hyper]) -> tuple[list[Hyper], np.ndarray]:
        kept, scores = [], []
        for h in points:
            try:
                c = cho_factor(kernel(h))
            except np.linalg.LinAlgError:
                continue
            w = _lower_solve(c, z)  # L⁻¹z: z K⁻¹ z = |L⁻¹z|², one triangular solve
            scores.append(-0.5 * w @ w - np.log(np.diag(c)).sum())
            kept.append(h)
        return kept, np.array(scores)

    def search() -> tuple[list[Hyper], np.ndarray]:
        if cached:
            return log_evidence(list(cached))
        grid = [Hyper(so, ratio, su, sn) for so in _OP_SCALES for ratio in ratios
                for su in _UNARY_SCALES for sn in _NOISE_SCALES]
        hypers, scores = log_evidence(grid)
        if n < _RESIDUAL_MIN_N:
            return hypers, scores
        around = []
        for i in np.argsort(-scores):
            key = (hypers[i].op, hypers[i].ratio, hypers[i].unary)
            if key not in around:
                around.append(key)
            if len(around) == _RESIDUAL_AROUND:
                break
        more = [Hyper(*key, sn, sr, rate, kind) for key in around for sr in _RESIDUAL_SCALES
                for kind, rates in _RESIDUAL_RATES.items() for rate in rates for sn in _NOISE_SCALES]
        extra_h, extra_s = log_evidence(more)
        return hypers + extra_h, np.concatenate([scores, extra_s])

    def leave_one_out(h: Hyper) -> tuple[np.ndarray, np.ndarray]:
        # Closed form: [K^-1 z]_i / [K^-1]_ii is the error of predicting measurement i from the
        # others, 1 / [K^-1]_ii that prediction's variance.
        kinv = cho_solve(cho_factor(kernel(h)), np.eye(n))
        return (kinv @ z) / np.diag(kinv), 1.0 / np.diag(kinv)

    grid, scores = search()
    if n >= _ROBUST_MIN_N:
        # One robust reweighting (Huber-like): a measurement far off what the others predict (a
        # timing outlier: the recorded mlp6 data has configurations 10 % off any additive fit) gets
        # a larger noise variance, so it stops dragging the per-format weights every other
        # prediction rests on; it still counts as measured at its own value.
        additive = [i for i, h in enumerate(grid) if h.residual == 0] or list(range(len(grid)))
        loo, _ = leave_one_out(grid[max(additive, key=lambda i: scores[i])])
        scale = 1.4826 * np.median(np.abs(loo))
        if scale > 0:
            inflate = np.maximum(1.0, (np.abs(loo) / (_ROBUST_CUT * scale)) ** 2)
            if np.any(inflate > 1.0):
                grid, scores = search()
    # Within each family (additive; with a non-additive part) the grid is averaged weighted by
    # marginal likelihood instead of taking its best point: with few measurements the best point is
    # overconfident (a tiny noise fits 3 points exactly), and front_confidence would stop a search
    # far too early. Between the families the marginal likelihood cannot choose while there are
    # fewer measurements than additive weights (the additive part alone then fits anything), so
    # they are weighed by how well each predicts every measurement from the others (leave-one-out
    # log density: a pseudo-Bayes factor). On additive data the non-additive family then gets no
    # weight, and adds no uncertainty to configurations far from those measured.
    is_residual = np.array([h.residual > 0 for h in grid])
    family = {}
    for flag in (False, True):
        members = np.flatnonzero(is_residual == flag)
        if len(members):
            best = members[np.argmax(scores[members])]
            err, var = leave_one_out(grid[best])
            family[flag] = (members, float(np.sum(-0.5 * np.log(2 * np.pi * var) - 0.5 * err ** 2 / var)))
    top = max(lpd for _, lpd in family.values())
    prior = {False: _NO_RESIDUAL_PRIOR, True: 1 - _NO_RESIDUAL_PRIOR}
    mass = {flag: prior[flag] * math.exp(lpd - top) for flag, (_, lpd) in family.items()}
    total = sum(mass.values())
    weights = np.zeros(len(grid))
    keep_list = []
    for flag, (members, _) in family.items():
        w = np.exp(scores[members] - scores[members].max())
        w /= w.sum()
        weights[members] = w * mass[flag] / total
        order = np.argsort(-w)
        # Each family keeps its best grid points, so a later fit can still weigh the two.
        keep_list.extend(members[order[: min(int(np.searchsorted(np.cumsum(w[order]), _KEEP_MASS)) + 1, _KEEP_MAX)]])
    picks = rng.choice(len(grid), n_samples, p=weights)
    keep = np.array([g for g in keep_list if weights[g] > 1e-6 * weights.max()], dtype=np.int64)
    kept_mass = weights[keep].sum()
    mean = np.zeros(p)
    samples = np.zeros((n_samples, p))
    noise = np.zeros(n_samples)
    parts = []
    for g in np.union1d(keep, picks):
        h = grid[g]
        c = cho_factor(kernel(h))
        var = prior_var(h)
        xv = x * var  # X diag(v), (n, p)
        alpha = cho_solve(c, z)
        if g in keep:
            mean += weights[g] / kept_mass * (xv.T @ alpha)
            if h.residual > 0:
                parts.append((weights[g] / kept_mass, h, alpha, c))
        rows = np.flatnonzero(picks == g)
        if len(rows):
            # Matheron's rule: a prior draw corrected by the data gives an exact posterior draw.
            w0 = rng.standard_normal((len(rows), p)) * np.sqrt(var)
            eps = rng.standard_normal((len(rows), n)) * h.noise * np.sqrt(inflate)
            if h.residual > 0:
                eps += rng.standard_normal((len(rows), n)) @ np.linalg.cholesky(
                    residual_cov(h) + 1e-9 * np.eye(n)).T
            resid = z[None, :] - w0 @ x.T - eps
            samples[rows] = w0 + (xv.T @ cho_solve(c, resid.T)).T
            noise[rows] = h.noise
    best = grid[int(np.argmax(weights))]
    # Leave-one-out errors of the likeliest model: how far off a prediction for a configuration
    # not in the data is, residual and model error together.
    loo_errors = leave_one_out(best)[0]
    loo_rms = float(np.sqrt(np.mean(loo_errors ** 2)))
    residual = Residual(onehot, structure, y_std, parts) if parts else None
    post = _to_raw(mean, samples, noise, best, y_mean, y_std, loo_rms)
    post.loo_errors = loo_errors * y_std
    post.residual = residual
    post.kept = tuple(grid[g] for g in keep_list)
    return post


def _to_raw(mean: np.ndarray, samples: np.ndarray, noise: np.ndarray, hyper: Hyper, y_mean: float,
            y_std: float, loo_rms: float = np.inf) -> Posterior:
    """Back from standardised units: y = y_mean + y_std * (X w)."""
    mean, samples = mean * y_std, samples * y_std
    mean[0] += y_mean
    samples[:, 0] += y_mean
    return Posterior(mean, samples, noise * y_std, hyper, loo_rms * y_std)
