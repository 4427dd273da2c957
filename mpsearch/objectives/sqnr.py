"""The ``sqnr`` proxy: how much of a model's real weights survives each layer's number format.

For a weight matrix W and its quantized copy Q, ``SQNR = 10·log10(Σ W² / Σ (W − Q)²)`` dB (higher is
better; each extra bit of an integer format is worth about 6 dB). Quantization, simulated in numpy:

- ``fp16`` / ``bf16``: a cast (round to nearest even), as the GEMM reads them;
- ``fp8_e4m3``: one scale per tensor, ``amax / 448``, then an exact e4m3 cast (``ml_dtypes``
  ``float8_e4m3fn``, saturating at ±448) — the per-tensor scaling of fp8 GEMMs (``torch._scaled_mm``,
  CUTLASS's fp8 kernels measured here);
- ``int8`` / ``int4``: symmetric, one scale per output channel (``amax_c / 127`` or ``amax_c / 7``),
  round to nearest, clip to [−127, 127] / [−7, 7].

The objective's value is the **unweighted mean of the per-layer SQNR in dB**. Why not weight by layer
size: a layer's relative error reaches the network's output through the layers after it whatever the
layer's size, so a small layer quantized badly can hurt as much as a large one; weighting by size
would also make the proxy mostly repeat the parameter count, which the capacity objective and the
latency already track. The per-layer values are stored on each trial (``sqnr_db_per_layer``).

Weights file: ``.npz`` or ``.safetensors``, one 2-D array per layer, named like the network's layers
(``fc1``) or with a ``.weight`` suffix (``fc1.weight``). A layer's array is ``(k, n)`` (mpsearch's
``X @ W``) or ``(n, k)`` (PyTorch's ``nn.Linear.weight``); a square one is read as PyTorch's
``(out, in)``. Command line: ``--objective sqnr:PATH`` (see :func:`mpsearch.objectives.parse_objective`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mpsearch.errors import InvalidSpecError
from mpsearch.formats import get_format
from mpsearch.network import Layer, Network
from mpsearch.objectives import Evaluation, Objective
from mpsearch.space import Config

FP8_E4M3_MAX = 448.0
INT_LEVELS = {"int8": 127, "int4": 7}
# A format that represents a layer exactly (e.g. fp16 weights under fp16) has infinite SQNR; the
# objective must be finite, so it is capped here (far above any lossy format: fp16 is ~70-80 dB).
MAX_SQNR_DB = 200.0


def _amax(x: np.ndarray, channel_axis: int | None) -> np.ndarray:
    if channel_axis is None:
        return np.asarray(np.max(np.abs(x)))
    axes = tuple(a for a in range(x.ndim) if a != channel_axis % x.ndim)
    return np.max(np.abs(x), axis=axes, keepdims=True)


def fake_quantize(x: np.ndarray, fmt: str, *, channel_axis: int | None = None, amax: Any = None) -> np.ndarray:
    """``x`` rounded to ``fmt`` and back to float (same dtype as ``x`` when it is floating).

    ``channel_axis``: the axis with one scale per entry, for int8/int4 (None: one scale per tensor).
    ``amax``: the range to scale to (a calibrated activation range); default: ``x``'s own maximum.
    fp8 always uses one scale per tensor; fp16/bf16 use none.
    """
    import ml_dtypes

    name = get_format(fmt).name
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x = x.astype(dtype, copy=False)
    if name == "fp16":
        return x.astype(np.float16).astype(dtype)
    if name == "bf16":
        return x.astype(ml_dtypes.bfloat16).astype(dtype)
    if name == "fp8_e4m3":
        scale = np.asarray(_amax(x, None) if amax is None else np.max(amax), dtype=dtype) / FP8_E4M3_MAX
        scale = np.where(scale > 0, scale, 1.0).astype(dtype)
        # e4m3fn has no infinity: values past 448 would become NaN, so saturate first (as kernels do).
        q = np.clip(x / scale, -FP8_E4M3_MAX, FP8_E4M3_MAX).astype(ml_dtypes.float8_e4m3fn)
        return (q.astype(dtype) * scale).astype(dtype)
    if name in INT_LEVELS:
        levels = INT_LEVELS[name]
        rng = _amax(x, channel_axis) if amax is None else np.asarray(amax, dtype=dtype)
        scale = (rng / levels).astype(dtype)
        scale = np.where(scale > 0, scale, 1.0).astype(dtype)
        return (np.clip(np.rint(x / scale), -levels, levels) * scale).astype(dtype)
    raise InvalidSpecError(f"format {name} has no quantization model in mpsearch.objectives.sqnr; known: "
                           "fp16, bf16, fp8_e4m3, int8, int4")


def sqnr_db(w: np.ndarray, fmt: str, channel_axis: int | None = None) -> float:
    """SQNR (dB) of ``w`` under ``fmt`` (per-channel scales along ``channel_axis`` for integers)."""
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    q = fake_quantize(w, fmt, channel_axis=channel_axis)
    signal = float(np.sum(np.square(w, dtype=np.float64)))
    noise = float(np.sum(np.square(w.astype(np.float64) - q.astype(np.float64))))
    if signal == 0.0:
        raise InvalidSpecError("the weights are all zero: SQNR is undefined; check the weights file")
    if noise == 0.0:
        return MAX_SQNR_DB
    return min(10.0 * math.log10(signal / noise), MAX_SQNR_DB)


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays by name from an ``.npz`` or ``.safetensors`` file; one-line InvalidSpecError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InvalidSpecError(f"sqnr weights file {path} does not exist; give an .npz or .safetensors file of per-layer weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    except ImportError as err:
        raise InvalidSpecError(f"reading {path} needs the Python package {err.name!r} (pip install 'mpsearch[report]')") from None
    except Exception as err:  # corrupt file, unsupported dtype (numpy has no bfloat16 in safetensors)
        raise InvalidSpecError(f"cannot read sqnr weights file {path}: {type(err).__name__}: {err}; "
                               "save float32 arrays with numpy.savez or safetensors.numpy.save_file") from None
    raise InvalidSpecError(f"sqnr weights file {path} must end in .npz or .safetensors, got {path.suffix or 'no suffix'!r}")


class SqnrObjective(Objective):
    """Mean per-layer SQNR (dB) of the weights in ``weights_path`` under a configuration's formats."""

    name = "sqnr"
    direction = "maximize"

    def __init__(self, weights_path: str | Path):
        self.weights_path = str(weights_path)
        self._weights: dict[str, np.ndarray] | None = None
        self._cache: dict[tuple[str, str], float] = {}

    def spec(self) -> str:
        return f"sqnr:{self.weights_path}"

    @property
    def weights(self) -> dict[str, np.ndarray]:
        if self._weights is None:
            self._weights = load_weights(self.weights_path)
        return self._weights

    def weight_of(self, layer: Layer) -> tuple[np.ndarray, int]:
        """The layer's weight matrix and its output-channel axis; InvalidSpecError if absent or misshapen."""
        weights = self.weights
        key = next((k for k in (layer.name, f"{layer.name}.weight") if k in weights), None)
        if key is None:
            have = ", ".join(sorted(weights)[:12]) + (" ..." if len(weights) > 12 else "")
            raise InvalidSpecError(
                f"sqnr weights file {self.weights_path} has no array for layer {layer.name!r} (looked for "
                f"{layer.name!r} and '{layer.name}.weight'; it has {have}); name the arrays after the network's layers"
            )
        w = weights[key]
        if w.ndim == 2 and w.shape == (layer.n, layer.k):
            return w, 0  # PyTorch (out, in); a square matrix is read this way
        if w.ndim == 2 and w.shape == (layer.k, layer.n):
            return w, 1
        raise InvalidSpecError(
            f"sqnr weights {key!r} in {self.weights_path} has shape {tuple(w.shape)}, but layer {layer.name} needs "
            f"(k, n) = ({layer.k}, {layer.n}) or (n, k) = ({layer.n}, {layer.k}); use the weights of this network"
        )

    def prepare(self, network: Network) -> None:
        """Fail before the search if any layer of ``network`` has no usable weights."""
        for layer in network.layers:
            self.weight_of(layer)

    def layer_sqnr(self, layer: Layer, fmt: str) -> float:
        key = (layer.name, get_format(fmt).name)
        if key not in self._cache:
            w, axis = self.weight_of(layer)
            try:
                self._cache[key] = sqnr_db(w, fmt, channel_axis=axis)
            except InvalidSpecError as err:
                raise InvalidSpecError(f"sqnr weights of layer {layer.name} in {self.weights_path}: {err}") from None
        return self._cache[key]

    def evaluate(self, network: Network, config: Config) -> Evaluation:
        per_layer = {layer.name: self.layer_sqnr(layer, config[layer.name]) for layer in network.layers}
        value = sum(per_layer.values()) / len(per_layer)
        return Evaluation(value, {"sqnr_db_per_layer": {k: round(v, 4) for k, v in per_layer.items()}})
