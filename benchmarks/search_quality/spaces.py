"""Spaces with a known true front for the search-quality suite (no GPU, nothing measured).

- :func:`pyramid72`: a 72-layer transformer-like network whose 72 GEMMs all have distinct shapes
  (12 blocks of widening width, 6 GEMMs each), unchained, so the roofline latency is a sum of
  per-layer terms and its exact front comes from a Pareto DP over layers.
- :func:`misaligned8`: an 8-layer MLP in which two layers have a reduction dimension that fp8 or
  int4 kernels cannot take (k not a multiple of 16 / 32): those layer/format pairs are infeasible.
- :class:`AdditiveTruth`: a latency (and capacity) that is exactly a sum of per-decision terms, with
  its exact front and the box the space spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpsearch.backends.roofline import DEFAULT_LAUNCH_US, device_spec, op_time_ms
from mpsearch.formats import MIN_K_MULTIPLE, get_format
from mpsearch.network import Layer, Network
from mpsearch.space import SearchSpace


def pyramid72(tokens: int = 8192) -> Network:
    """12 blocks with model width 512, 640, ..., 1920; per block a fused qkv projection (d → 3d), the
    attention output (d → d), an MLP (d → 4d → d) and a low-rank adapter (d → d/2 → d)."""
    layers = []
    for b in range(12):
        d = 512 + 128 * b
        for name, k, n in (("qkv", d, 3 * d), ("out", d, d), ("fc1", d, 4 * d), ("fc2", 4 * d, d),
                           ("down", d, d // 2), ("up", d // 2, d)):
            layers.append(Layer(f"b{b}.{name}", tokens, n, k))
    shapes = {(l.m, l.n, l.k) for l in layers}
    assert len(shapes) == len(layers) == 72, "pyramid72's layers must all have distinct shapes"
    return Network("pyramid72", tuple(layers), (), False, "72 distinct GEMM shapes, unchained")


def misaligned8(batch: int = 2048) -> Network:
    """An MLP whose fc3 (k = 2056) cannot run in fp8 or int4 and whose fc6 (k = 1048) cannot run in
    int4: the backends refuse those pairs before any kernel runs."""
    sizes = [8192, 4096, 2056, 4096, 2048, 1048, 2048, 1024, 4096]
    return Network("misaligned8", tuple(Layer(f"fc{i + 1}", batch, sizes[i + 1], sizes[i]) for i in range(8)),
                   (), True, "an MLP with two layers whose k some formats cannot take")


def infeasible_pairs(space: SearchSpace) -> np.ndarray:
    """(D, F) bool: decision d cannot run in format f (a member layer's k is misaligned for it)."""
    layer = {l.name: l for l in space.network.layers}
    return np.array([[any(layer[n].k % MIN_K_MULTIPLE.get(get_format(f).name, 1) for n in members)
                      for f in space.menu] for _, members in space.decisions])


@dataclass
class AdditiveTruth:
    """Latency and capacity as (D, F) tables of per-decision terms; the configuration's value is the
    sum over decisions (exact for an unchained network under the roofline model)."""

    space: SearchSpace
    latency_terms: np.ndarray  # (D, F) ms
    capacity_terms: np.ndarray  # (D, F)

    @classmethod
    def roofline(cls, space: SearchSpace, device: str) -> "AdditiveTruth":
        net = space.network
        if net.chained:
            raise ValueError(f"{net.name} is chained: its latency is not a sum of per-layer terms")
        spec = device_spec(device)
        lat = np.zeros((len(space.decisions), len(space.menu)))
        for d, (_, members) in enumerate(space.decisions):
            for f, fmt in enumerate(space.menu):
                cfg = ["fp16"] * len(net.layers)
                for n in members:
                    cfg[net.layer_names.index(n)] = fmt
                lat[d, f] = sum(op_time_ms(o, spec, DEFAULT_LAUNCH_US) for o in net.ops(cfg) if o.layer in members)
        k = {l.name: l.k for l in net.layers}
        cap = np.array([[sum(k[n] for n in members) * get_format(f).bits for f in space.menu]
                        for _, members in space.decisions], dtype=float)
        return cls(space, lat, cap)

    def values(self, codes: np.ndarray) -> np.ndarray:
        """(n, 2) (latency, capacity) of configurations coded as format indices per decision."""
        codes = np.atleast_2d(codes)
        rows = np.arange(codes.shape[1])
        return np.column_stack([self.latency_terms[rows, codes].sum(1), self.capacity_terms[rows, codes].sum(1)])

    def true_front(self) -> np.ndarray:
        """The exact front (K, 2) as (latency, capacity): a Pareto DP over decisions, never thinned."""
        from mpsearch.search.layerwise.pareto import pareto_dp

        vals = pareto_dp(np.stack([self.latency_terms, -self.capacity_terms], axis=2), None, max_front=10**9)[1]
        return np.column_stack([vals[:, 0], -vals[:, 1]])

    def box(self) -> np.ndarray:
        """(best, worst) of each objective over the space, (2, 2): for the reference point."""
        lat, cap = self.latency_terms, self.capacity_terms
        return np.array([[lat.min(1).sum(), cap.min(1).sum()], [lat.max(1).sum(), cap.max(1).sum()]])


def llama8b_whole(tokens: int = 2048) -> Network:
    """All 32 decoder blocks of Llama-3-8B: 224 GEMMs (7 shapes), unchained."""
    from mpsearch.network import preset

    block = preset("llama8b-block-prefill").layers
    layers = tuple(Layer(f"b{b}.{l.name}", tokens, l.n, l.k) for b in range(32) for l in block)
    return Network("llama8b-32blocks-prefill", layers, (), False, "Llama-3-8B, 32 blocks, 224 GEMMs")
