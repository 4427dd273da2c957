"""Which weights a configuration switches on: the features of the layer-additive model."""

from __future__ import annotations

import numpy as np

from mpsearch.space import SearchSpace


def _shape_terms(layer) -> tuple[float, ...]:
    """What a GEMM's cost grows with: its FLOPs, the elements of its activation (m·k: read, and
    converted in an unchained network) and those of its weight and result (k·n + m·n)."""
    return (float(layer.flops), float(layer.m * layer.k), float(layer.k * layer.n + layer.m * layer.n))


_N_SHAPE = 3
_COUNT_BLOCK = 1 << 22  # entries of the dense count matrix built at once by Structure.predict (32 MB)


class Structure:
    """Which weights a configuration switches on, following :meth:`Network.ops`.

    A configuration is coded as an integer vector: for each decision, the index of its format in the
    menu. Weight blocks, each with its own prior scale:

    - ``intercept``;
    - ``shape``: three per format f, the Σ over layers in f of the GEMM's FLOPs, of its activation
      elements (m·k) and of its weight and result elements (k·n + m·n), each scaled to at most 1:
      the shared cost per FLOP and per element of a format, so a few trials inform every layer
      (on a 72-layer network, splitting the activation off took 99 % from ~55 to 47 measurements);
    - ``op``: one weight per op a backend prices, keyed as the backend keys it — a GEMM by
      (m, n, k, format), a conversion by (m, k, format) — so layers of the same shape (the blocks of
      a transformer) share their weights, as they share their measured kernels;
    - ``out``: in a chained network, one weight per GEMM *and its output format* (the next layer's
      format, fp16 for the last layer): the epilogue's part of a boundary, a small correction;
    - ``unary``: each decision's own term per format, for what is not priced by shape (an accuracy
      proxy's per-layer sensitivity; anything the ops miss);
    - ``null``: one weight fixed at 0 that ops which do not exist (no conversion to fp16) point to.
    """

    def __init__(self, space: SearchSpace):
        from mpsearch.formats import get_format

        self.space = space
        self.names = [name for name, _ in space.decisions]
        self.menu = list(space.menu)
        self.n_decisions = len(self.names)
        self.n_formats = len(self.menu)
        net = space.network
        self.chained = net.chained
        decision_of = {layer: d for d, (_, layers) in enumerate(space.decisions) for layer in layers}
        self.layer_decision = np.array([decision_of[n] for n in net.layer_names], dtype=np.int64)
        n_layers, f = len(net.layers), self.n_formats
        layer = {l.name: l for l in net.layers}
        shape = np.array([[sum(_shape_terms(layer[n])[i] for n in members) for i in range(_N_SHAPE)]
                          for _, members in space.decisions]).reshape(-1, _N_SHAPE)
        self.shape = shape / np.maximum(shape.max(axis=0), 1.0) if len(shape) else shape  # (D, _N_SHAPE)
        self._shape_totals = np.tile(self.shape.sum(axis=0), self.n_formats) if len(self.shape) else np.ones(1)
        # onehot(codes) @ _shape_map sums each decision's shape terms into its format's block.
        self._shape_map = np.zeros((self.n_decisions * self.n_formats, self.n_formats * _N_SHAPE))
        for d in range(self.n_decisions):
            for fi in range(self.n_formats):
                self._shape_map[d * self.n_formats + fi, fi * _N_SHAPE:(fi + 1) * _N_SHAPE] = self.shape[d]

        bits = np.array([get_format(fmt).bits for fmt in self.menu], dtype=float)
        self._relative_bits = bits / bits.max()  # each format's operand width, as a fraction of the widest

        op_keys: dict[tuple, int] = {}
        out_keys: dict[tuple, int] = {}
        self.main_idx = np.zeros((n_layers, f), dtype=np.int64)  # GEMM (shape, fmt), local index
        self.conv_idx = np.full((n_layers, f), -1, dtype=np.int64)  # conversion (m, k, fmt), -1: none
        self.out_idx = np.full((n_layers, f, f), -1, dtype=np.int64)  # GEMM (shape, fmt, out_fmt)
        for li, l in enumerate(net.layers):
            for fi, fmt in enumerate(self.menu):
                self.main_idx[li, fi] = op_keys.setdefault(("gemm", l.m, l.n, l.k, fmt), len(op_keys))
                if not net.chained and get_format(fmt).name != "fp16":
                    self.conv_idx[li, fi] = op_keys.setdefault(("convert", l.m, l.k, fmt), len(op_keys))
                if net.chained:
                    for gi, nxt in enumerate(self.menu):
                        out = nxt if li < n_layers - 1 else "fp16"
                        self.out_idx[li, fi, gi] = out_keys.setdefault((l.m, l.n, l.k, fmt, out), len(out_keys))
        self.offsets = {}
        pos = 0
        for name, size in (("intercept", 1), ("shape", _N_SHAPE * f), ("op", len(op_keys)), ("out", len(out_keys)),
                           ("unary", self.n_decisions * f), ("null", 1)):
            self.offsets[name] = (pos, pos + size)
            pos += size
        self.n_features = pos
        null = self.offsets["null"][0]
        op0, out0 = self.offsets["op"][0], self.offsets["out"][0]
        self.main_idx += op0
        self.conv_idx = np.where(self.conv_idx >= 0, self.conv_idx + op0, null)
        self.out_idx = np.where(self.out_idx >= 0, self.out_idx + out0, null)

    def layer_codes(self, codes: np.ndarray) -> np.ndarray:
        return np.atleast_2d(codes)[:, self.layer_decision]

    def active(self, codes: np.ndarray) -> np.ndarray:
        """(n, A) indices of the 0/1 features each configuration switches on; an index may repeat
        (two layers of one shape and format run the same op twice), and the sum counts it twice."""
        codes = np.atleast_2d(codes)
        lc = self.layer_codes(codes)
        n, n_layers = lc.shape
        rows = np.arange(n_layers)
        nxt = np.concatenate([lc[:, 1:], lc[:, -1:]], axis=1)  # the last layer's "next" is ignored
        cols = [np.zeros((n, 1), dtype=np.int64),
                self.main_idx[rows, lc], self.conv_idx[rows, lc], self.out_idx[rows, lc, nxt],
                self.offsets["unary"][0] + np.arange(self.n_decisions) * self.n_formats + codes]
        return np.concatenate(cols, axis=1)

    def onehot(self, codes: np.ndarray) -> np.ndarray:
        """(n, D·F) indicator of each decision's format: ``onehot(a) @ onehot(b).T`` counts the
        decisions two configurations share (the non-additive part's kernel is built on it)."""
        codes = np.atleast_2d(codes)
        out = np.zeros((len(codes), self.n_decisions * self.n_formats))
        out[np.repeat(np.arange(len(codes)), self.n_decisions),
            (np.arange(self.n_decisions) * self.n_formats + codes).ravel()] = 1.0
        return out

    def format_mix(self, onehot: np.ndarray) -> np.ndarray:
        """(n, F·_N_SHAPE) from one-hot rows: the share of the network's FLOPs, activation elements
        and other elements that runs in each format (each in [0, 1])."""
        return onehot @ self._shape_map / np.maximum(self._shape_totals, 1e-12)

    def effective_bits(self, onehot: np.ndarray) -> np.ndarray:
        """(n, _N_SHAPE) from one-hot rows: the mean operand width over the network's FLOPs, its
        activation elements and its other elements, as a fraction of the widest format's."""
        shares = self.format_mix(onehot).reshape(len(onehot), self.n_formats, _N_SHAPE)
        return np.einsum("nfj,f->nj", shares, self._relative_bits)

    def shape_design(self, codes: np.ndarray) -> np.ndarray:
        """(n, F·_N_SHAPE) shape features (see the class docstring)."""
        return self.onehot(codes) @ self._shape_map

    def design(self, codes: np.ndarray) -> np.ndarray:
        codes = np.atleast_2d(codes)
        idx = self.active(codes)
        x = np.zeros((len(idx), self.n_features))
        np.add.at(x, (np.repeat(np.arange(len(idx)), idx.shape[1]), idx.ravel()), 1.0)
        lo, hi = self.offsets["shape"]
        x[:, lo:hi] = self.shape_design(codes)
        x[:, self.offsets["null"][0]] = 0.0
        return x

    def predict(self, codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Model values of ``codes`` (C, D) under ``weights`` (S, n_features): (S, C)."""
        codes = np.atleast_2d(codes)
        weights = np.atleast_2d(weights)
        lo, hi = self.offsets["shape"]
        out = weights[:, lo:hi] @ self.shape_design(codes).T
        # Dense counts, a block of rows at a time: a matrix product (BLAS) per block, with memory
        # bounded whatever the number of candidates (a 224-layer network has ~10³ features).
        step = max(1, _COUNT_BLOCK // max(self.n_features, 1))
        for lo_row in range(0, len(codes), step):
            rows = slice(lo_row, lo_row + step)
            out[:, rows] += weights @ self.counts(codes[rows]).T
        return out

    def counts(self, codes: np.ndarray) -> np.ndarray:
        """(C, n_features) count of the 0/1 features each configuration switches on (a repeated index
        counts twice; the shape block is not included)."""
        idx = self.active(codes)
        c = len(idx)
        flat = (np.arange(c)[:, None] * self.n_features + idx).ravel()
        return np.bincount(flat, minlength=c * self.n_features).reshape(c, self.n_features).astype(float)

    def blocks(self) -> dict[str, np.ndarray]:
        """Feature masks per prior block."""
        masks = {}
        for name, (lo, hi) in self.offsets.items():
            mask = np.zeros(self.n_features, dtype=bool)
            mask[lo:hi] = True
            masks[name] = mask
        return masks

    def additive_rank(self) -> int:
        """Free parameters of the model's additive part (intercept and op weights): the rank of
        their design over random configurations (layers of one shape share weights)."""
        rng = np.random.default_rng(0)
        keep = self.blocks()["intercept"] | self.blocks()["op"]
        n = max(4 * int(keep.sum()), 16)
        codes = rng.integers(0, self.n_formats, (n, self.n_decisions))
        return int(np.linalg.matrix_rank(self.design(codes)[:, keep]))

    def to_dp_terms(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unary (D, F, K) and consecutive-decision pair (D-1, F, F, K) terms of K weight vectors
        ``weights`` (K, n_features), for :func:`pareto_dp`.

        A chained boundary between layers of decisions that are not consecutive in decision order
        (possible only with ties across non-adjacent layers) cannot be a DP transition; it is replaced
        by its best additive approximation (row means + column means - grand mean). The DP then only
        generates candidates; they are scored with the full model.
        """
        weights = np.atleast_2d(weights)
        k = len(weights)
        d, f = self.n_decisions, self.n_formats
        lo, hi = self.offsets["unary"]
        unary = weights[:, lo:hi].reshape(k, d, f).transpose(1, 2, 0).copy()
        lo, hi = self.offsets["shape"]
        unary += np.einsum("dj,kfj->dfk", self.shape, weights[:, lo:hi].reshape(k, f, _N_SHAPE))
        unary[0] += weights[:, 0]  # the intercept, so DP values are model predictions
        pair = np.zeros((max(d - 1, 0), f, f, k))
        n_layers = len(self.layer_decision)
        for li in range(n_layers):
            dl = self.layer_decision[li]
            unary[dl] += (weights[:, self.main_idx[li]] + weights[:, self.conv_idx[li]]).T
            if not self.chained:
                continue
            block = weights[:, self.out_idx[li]].transpose(1, 2, 0)  # (f, g, K)
            if li == n_layers - 1:
                unary[dl] += block[:, 0]  # the last layer writes fp16 whatever comes "next"
                continue
            dn = self.layer_decision[li + 1]
            if dn == dl:
                unary[dl] += block[np.arange(f), np.arange(f)]
            elif dn == dl + 1:
                pair[dl] += block
            elif dl == dn + 1:
                pair[dn] += block.transpose(1, 0, 2)
            else:
                row, col, grand = block.mean(axis=1), block.mean(axis=0), block.mean(axis=(0, 1))
                unary[dl] += row
                unary[dn] += col - grand
        return unary, pair
