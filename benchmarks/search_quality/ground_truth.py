"""Ground truth for the search-quality benchmark, served by the replay backend from a recording
directory (``mpsearch/data/recordings/<device>/``, format in ``mpsearch/data/recordings/README.md``).

- :class:`EndToEnd`: a configuration's latency is its recorded end-to-end median (mlp6: every
  configuration of the menu must be recorded end to end, or the benchmark refuses to run).
- :class:`OpSum`: latency = Σ of the recorded per-op medians of ``Network.ops(config)`` (the replay
  backend's "sum of recorded per-op latencies"). For an unchained network that is exactly additive
  over layers, so its true front comes from a Pareto DP over layers, not enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpsearch.backends.replay import END_TO_END, ReplayBackend, op_key
from mpsearch.errors import InvalidSpecError
from mpsearch.formats import get_format
from mpsearch.space import Config, SearchSpace, capacity


def describe_source(backend: ReplayBackend) -> str:
    """Where the latencies come from, for tables and plot titles."""
    rec = backend.recording
    if (rec.path / "SYNTHETIC").exists():
        return f"SYNTHETIC data ({rec.path}), not a measurement"
    return f"replayed from the recording {rec.name} ({rec.device}, {rec.provenance.get('date', 'undated')})"


@dataclass
class EndToEnd:
    space: SearchSpace
    backend: ReplayBackend
    latency_ms: dict[str, float]  # config key -> recorded end-to-end median

    @classmethod
    def load(cls, data_dir: Path, space: SearchSpace) -> "EndToEnd":
        backend = ReplayBackend(data_dir)
        lat, not_e2e = {}, []
        for config in space.all_configs():
            result = backend.measure(space.network, config)
            if result.detail != END_TO_END:
                not_e2e.append(config.key)
            lat[config.key] = result.ms
        if not_e2e:
            raise InvalidSpecError(
                f"{backend.recording.path}: {len(not_e2e)} of {space.size} configurations of {space.network.name} over "
                f"{','.join(space.menu)} are not recorded end to end (e.g. {not_e2e[0]}); record the whole space")
        return cls(space, backend, lat)

    def latency(self, config: Config) -> float:
        return self.latency_ms[config.key]

    def all_points(self) -> np.ndarray:
        """(latency, capacity) of every configuration of the space."""
        net = self.space.network
        return np.array([[self.latency(c), capacity(net, c)] for c in self.space.all_configs()])


@dataclass
class OpSum:
    space: SearchSpace
    backend: ReplayBackend

    @classmethod
    def load(cls, data_dir: Path, space: SearchSpace) -> "OpSum":
        backend = ReplayBackend(data_dir)
        if space.network.chained:
            raise InvalidSpecError(f"{space.network.name} is chained: use the end-to-end ground truth for it")
        backend.prepare(space.network, space.menu)  # every op any configuration runs is recorded
        return cls(space, backend)

    def latency(self, config: Config) -> float:
        ops = self.backend.recording.ops
        return sum(ops[op_key(o)].median_ms for o in self.space.network.ops(config.formats))

    def layer_costs(self) -> np.ndarray:
        """(D, F): each decision's recorded latency (its conversion and GEMM) in each format."""
        net, ops = self.space.network, self.backend.recording.ops
        out = np.zeros((len(self.space.decisions), len(self.space.menu)))
        for d, (_, layers) in enumerate(self.space.decisions):
            for f, fmt in enumerate(self.space.menu):
                cfg = ["fp16"] * len(net.layers)
                for layer in layers:
                    cfg[net.layer_names.index(layer)] = fmt
                out[d, f] = sum(ops[op_key(o)].median_ms for o in net.ops(cfg) if o.layer in layers)
        return out

    def capacity_terms(self) -> np.ndarray:
        net = self.space.network
        k = {l.name: l.k for l in net.layers}
        return np.array([[sum(k[l] for l in layers) * get_format(f).bits for f in self.space.menu]
                         for _, layers in self.space.decisions], dtype=float)

    def true_front(self) -> tuple[np.ndarray, np.ndarray]:
        """(the exact front (K, 2) as (latency, capacity), the space's (best, worst) box (2, 2)),
        by a Pareto DP over layers (capacity negated so both are minimised) with no thinning."""
        from mpsearch.search.layerwise.pareto import pareto_dp

        lat, cap = self.layer_costs(), self.capacity_terms()
        vals = pareto_dp(np.stack([lat, -cap], axis=2), None, max_front=10**9)[1]
        front = np.column_stack([vals[:, 0], -vals[:, 1]])
        box = np.array([[lat.min(1).sum(), cap.min(1).sum()], [lat.max(1).sum(), cap.max(1).sum()]])
        return front, box


def oracle_trials(front: np.ndarray, reference, directions, targets=(0.95, 0.99, 1.0)) -> dict[float, int]:
    """How many configurations an oracle that measures only true-front points, the largest
    hypervolume gain first, needs to reach each fraction of the true front's hypervolume (greedy:
    a lower bound for any sampler up to the greedy's slack)."""
    from mpsearch.search.hypervolume import hypervolume

    total = hypervolume(front, reference, directions)
    chosen: list[int] = []
    out, hv = {}, 0.0
    left = list(range(len(front)))
    while left and len(out) < len(targets):
        gains = [hypervolume(front[chosen + [i]], reference, directions) for i in left]
        best = int(np.argmax(gains))
        hv = gains[best]
        chosen.append(left.pop(best))
        for t in targets:
            if t not in out and hv >= t * total * (1 - 1e-12):
                out[t] = len(chosen)
    return out


def additive_ceiling(gt: EndToEnd, reference, directions) -> tuple[float, float]:
    """Fit the layerwise sampler's additive model (layer + boundary terms) by least squares to all
    recorded configurations: (residual RMS as a fraction of the mean latency, the true hypervolume
    fraction of the front that fitted model predicts). The part of the latency no layer-additive
    model can know, and the ceiling it puts on a model-guided search with few measurements."""
    import moocore

    from mpsearch.search.hypervolume import hypervolume
    from mpsearch.search.layerwise.features import Structure

    st = Structure(gt.space)
    index = {f: i for i, f in enumerate(gt.space.menu)}
    configs = list(gt.space.all_configs())
    codes = np.array([[index[c[layers[0]]] for _, layers in gt.space.decisions] for c in configs])
    y = np.array([gt.latency(c) for c in configs])
    x = st.design(codes)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    fit = x @ w
    points = gt.all_points()
    predicted = np.column_stack([fit, points[:, 1]])
    chosen = points[moocore.is_nondominated(predicted, maximise=[False, True])]
    front = points[moocore.is_nondominated(points, maximise=[False, True])]
    frac = hypervolume(chosen, reference, directions) / hypervolume(front, reference, directions)
    return float(np.sqrt(np.mean((y - fit) ** 2)) / y.mean()), float(frac)
