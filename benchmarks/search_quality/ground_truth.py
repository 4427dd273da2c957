"""Ground truth for the search-quality benchmark, read from a recording directory
(``studies/data/<device>/``: ``networks.csv`` end-to-end latencies per configuration, ``ops.csv``
per-op latencies, one row per op of ``Network.ops()``).

- :class:`EndToEnd`: latency of a configuration = its recorded end-to-end median (mlp6: every one
  of the 729 configurations of a menu must be there).
- :class:`OpSum`: latency = Σ of the recorded per-op medians of ``Network.ops(config)``; exactly
  additive over layers for an unchained network, so its true front comes from a Pareto DP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mpsearch.errors import InvalidSpecError
from mpsearch.network import Network
from mpsearch.space import Config, SearchSpace, capacity


def describe_source(data_dir: Path) -> str:
    """Where the numbers come from, for tables and plot titles."""
    data_dir = Path(data_dir)
    if (data_dir / "SYNTHETIC").exists():
        return f"SYNTHETIC data ({data_dir}), not a measurement"
    return f"replayed from the recording {data_dir}"


@dataclass
class EndToEnd:
    space: SearchSpace
    latency_ms: dict[str, float]  # config key -> recorded end-to-end median

    @classmethod
    def load(cls, data_dir: Path, space: SearchSpace) -> "EndToEnd":
        path = Path(data_dir) / "networks.csv"
        if not path.exists():
            raise InvalidSpecError(f"{path}: no such file; record the network first or pass --data DIR")
        df = pd.read_csv(path)
        net = space.network
        df = df[(df["network"] == net.name) & (df["fingerprint"].astype(str) == net.fingerprint())]
        lat = dict(zip(df["config"], df["median_ms"].astype(float)))
        missing = [c.key for c in space.all_configs() if c.key not in lat]
        if missing:
            raise InvalidSpecError(
                f"{path}: {len(missing)} of {space.size} configurations of {net.name} over "
                f"{','.join(space.menu)} are not recorded (e.g. {missing[0]}); record the whole space")
        return cls(space, lat)

    def latency(self, config: Config) -> float:
        return self.latency_ms[config.key]

    def all_points(self) -> np.ndarray:
        """(latency, capacity) of every configuration of the space."""
        net = self.space.network
        return np.array([[self.latency(c), capacity(net, c)] for c in self.space.all_configs()])


@dataclass
class OpSum:
    space: SearchSpace
    op_ms: dict[tuple, float]

    @classmethod
    def load(cls, data_dir: Path, space: SearchSpace) -> "OpSum":
        path = Path(data_dir) / "ops.csv"
        if not path.exists():
            raise InvalidSpecError(f"{path}: no such file; record per-op latencies first or pass --data DIR")
        df = pd.read_csv(path)
        table = {(r.kind, int(r.m), int(r.n), int(r.k), r.fmt, r.out_fmt): float(r.median_ms)
                 for r in df.itertuples(index=False)}
        gt = cls(space, table)
        gt.layer_costs()  # every op of every (layer, format) must be recorded
        return gt

    def _op(self, op) -> float:
        key = (op.kind, op.m, op.n, op.k, op.fmt, op.out_fmt)
        if key not in self.op_ms:
            raise InvalidSpecError(f"ops.csv has no row for {key}; record that op (kind,m,n,k,fmt,out_fmt)")
        return self.op_ms[key]

    def latency(self, config: Config) -> float:
        return sum(self._op(o) for o in self.space.network.ops(config.formats))

    def layer_costs(self) -> np.ndarray:
        """(D, F) latency of each decision in each format (the network must be unchained)."""
        net: Network = self.space.network
        if net.chained:
            raise InvalidSpecError(f"{net.name} is chained: its latency is not a sum of per-layer terms")
        out = np.zeros((len(self.space.decisions), len(self.space.menu)))
        for d, (_, layers) in enumerate(self.space.decisions):
            for f, fmt in enumerate(self.space.menu):
                cfg = ["fp16"] * len(net.layers)
                for layer in layers:
                    cfg[net.layer_names.index(layer)] = fmt
                out[d, f] = sum(self._op(o) for o in net.ops(cfg) if o.layer in layers)
        return out

    def capacity_terms(self) -> np.ndarray:
        from mpsearch.formats import get_format

        net = self.space.network
        k = {l.name: l.k for l in net.layers}
        return np.array([[sum(k[l] for l in layers) * get_format(f).bits for f in self.space.menu]
                         for _, layers in self.space.decisions], dtype=float)

    def true_front(self) -> tuple[np.ndarray, np.ndarray]:
        """(front (K, 2) as (latency, capacity), nadir/ideal box (2, 2)) from the exact additive model
        by a Pareto DP over layers (capacity negated so both are minimised)."""
        from mpsearch.search.layerwise import pareto_dp

        lat, cap = self.layer_costs(), self.capacity_terms()
        unary = np.stack([lat, -cap], axis=2)
        _, vals = pareto_dp(unary, None, max_front=10**9)
        front = np.column_stack([vals[:, 0], -vals[:, 1]])
        box = np.array([[lat.min(1).sum(), cap.min(1).sum()], [lat.max(1).sum(), cap.max(1).sum()]])
        return front, box
