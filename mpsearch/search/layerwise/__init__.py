"""The layer-additive Bayesian sampler (``--sampler layerwise``).

Why: every trial costs GPU time, and on a GPU a network's latency is close to the sum of its layers'
latencies; the capacity objective is exactly additive and many accuracy proxies nearly are. General
samplers (TPE, NSGA-II, GP) do not know that. This sampler does:

**Model.** Each objective that is not known in closed form is a Bayesian linear regression on
features of the configuration that follow :meth:`mpsearch.network.Network.ops` (blocks detailed in
``features.Structure``): an intercept; per-format FLOP and element counts (the shared cost of a format);
one weight per op a backend prices, keyed like the backend keys it, so layers of one shape (the
blocks of a transformer) share weights; in a chained network, one small correction per GEMM and its
output format (the next layer's, paid in the epilogue: the boundary terms); and each decision's own
term per format, for objectives that do not follow shapes (an accuracy proxy's per-layer
sensitivity). On top, a Gaussian-process part learns what is not additive, over the Hamming
distance between configurations (a product, interacting layers), their format mix, or their effective
bits (a threshold on the total bits); it is weighed against
the purely additive model by how well each predicts every measurement from the others, so additive
data keeps the additive model (``model``). Each block has its own prior scale; the scales and the
noise level are averaged over a grid, weighted by marginal likelihood. Posterior samples are drawn
pathwise (Matheron's rule), O(n² + n·p) each, so 200+ layers are cheap.

Objectives given in ``exact`` (capacity, say) are computed with their closed form, never modelled.

**Infeasible configurations** (a backend refused them: the trial's ``unsupported`` constraint is
violated) are never fitted; which (decision, format) pairs cannot run is learnt from them
(``feasibility``), proposals avoid pairs known to be infeasible and weigh the others by their
probability of running.

**Proposal.** The next configuration maximises the expected hypervolume improvement (EHVI, Monte
Carlo over posterior samples) over the current front. The argmax over the exponential space comes
from structure, not enumeration: for a few posterior samples (Thompson samples) and the posterior
mean, a Pareto dynamic program over decisions (state: the current decision's format, so boundary
terms are exact) returns every Pareto-optimal configuration of that additive model. Those
configurations, the neighbours, mutations and recombinations of the measured front, and a few random
ones are the candidates; a cheap screening keeps a few hundred for EHVI (``proposal``). Under bounds
on objectives (``--constraint``) the proposal maximises instead the expected improvement of the best
configuration that meets them.
Configurations already completed, or RUNNING/WAITING in any worker, are never proposed while unseen
ones exist; RUNNING ones enter the front at their predicted value (a "believer"), so k workers
asking at once get k proposals chosen jointly, not k copies of one.

**Contract.** Optuna parameters are named by decision (see :meth:`SearchSpace.suggest`);
``sample_relative`` returns ``{decision: format}`` over the space ``infer_relative_search_space``
reports. The study is re-read on every proposal (several workers may share it). FAILED and PRUNED
trials are ignored by the model. With a seed, the proposal for trial number *t* depends only on
(seed, t, the study's contents): the same seed gives the same proposals, and workers sharing a seed still differ
because their trial numbers differ. A FAILED configuration is not proposed again while unseen ones
exist (what failed, e.g. an unsupported kernel, usually fails again; enqueue it to retry).
"""

from mpsearch.search.layerwise.sampler import DEFAULT_SETTINGS, LayerwiseSampler

__all__ = ["DEFAULT_SETTINGS", "LayerwiseSampler"]
