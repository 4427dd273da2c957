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

Weights file: ``.npz`` or ``.safetensors`` (float32, float16 or bfloat16 tensors; bfloat16 is read
without torch, and tensors are read only when a layer needs them, so a released checkpoint works as
it is), or a folder of ``.safetensors`` shards. One 2-D array per layer, named like the network's
layer (``fc1``), with a ``.weight`` suffix (``fc1.weight``), or ending so after a dot: layer
``layers.0.self_attn.q_proj`` finds ``model.layers.0.self_attn.q_proj.weight`` (the one key that
matches; a name that matches several is an error naming them). A layer's array is ``(k, n)``
(mpsearch's ``X @ W``) or ``(n, k)`` (PyTorch's ``nn.Linear.weight``); a square one is read as
PyTorch's ``(out, in)``. Command line: ``--objective sqnr:PATH`` (see
:func:`mpsearch.objectives.parse_objective`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
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


# safetensors dtype → numpy dtype it is stored as; BF16 is stored as uint16 and widened to float32.
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values (their raw uint16 bits) as float32: bfloat16 is float32's upper half, so the
    bits shifted up 16 are the exact float32 value."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile(Mapping[str, np.ndarray]):
    """The tensors of one ``.safetensors`` file by name, read (memory-mapped) when looked up.

    The format: an 8-byte little-endian header length, a JSON header ``{name: {dtype, shape,
    data_offsets: [begin, end]}, "__metadata__": {...}}``, then the data, offsets relative to its
    start. Parsed here because safetensors' numpy loader cannot return bfloat16 and its torch loader
    needs torch. F32/F16 come back as they are, BF16 as float32; other dtypes raise when looked up.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            size = self.path.stat().st_size
            length = int.from_bytes(head, "little")
            if len(head) < 8 or not 2 <= length <= size - 8:
                raise ValueError(f"not a safetensors file: its first 8 bytes give a header of {length} bytes, "
                                 f"which does not fit in its {size}")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        header.pop("__metadata__", None)
        self._start, self._size = 8 + length, size
        self._entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, entry in header.items():
            try:
                begin, end = (int(x) for x in entry["data_offsets"])
                shape = tuple(int(d) for d in entry["shape"])
                dtype = str(entry["dtype"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"tensor {name!r} has a malformed header entry {entry!r}") from None
            if not 0 <= begin <= end <= size - self._start:
                raise ValueError(f"tensor {name!r} lies outside the file (offsets {begin}..{end})")
            self._entries[name] = (dtype, shape, begin, end)
        self._raw: np.ndarray | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, shape, begin, end = self._entries[name]
        if dtype not in _SAFETENSORS_DTYPES:
            raise InvalidSpecError(f"sqnr weights {name!r} in {self.path} are {dtype}; sqnr reads F32, F16 and BF16 "
                                   "tensors: save the unquantized weights")
        np_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * np_dtype.itemsize:
            raise InvalidSpecError(f"sqnr weights {name!r} in {self.path}: {end - begin} bytes do not hold {dtype} "
                                   f"{list(shape)}; the file is corrupt")
        if self._raw is None:
            self._raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        data = self._raw[self._start + begin:self._start + end].view(np_dtype).reshape(shape)
        return bf16_bits_to_float32(data) if dtype == "BF16" else np.array(data)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the header."""
        return self._entries[name][1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class _Shards(Mapping[str, np.ndarray]):
    """Several safetensors files seen as one (a checkpoint saved in shards)."""

    def __init__(self, files: list[SafetensorsFile]):
        self._owner: dict[str, SafetensorsFile] = {}
        for f in files:
            for name in f:
                if name in self._owner:
                    raise InvalidSpecError(f"sqnr weights {name!r} are in both {self._owner[name].path} and {f.path}: "
                                           "give one file, or a folder of one checkpoint's shards")
                self._owner[name] = f

    def __getitem__(self, name: str) -> np.ndarray:
        return self._owner[name][name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._owner[name].shape(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner)

    def __len__(self) -> int:
        return len(self._owner)


def load_weights(path: str | Path) -> Mapping[str, np.ndarray]:
    """Arrays by name from an ``.npz`` or ``.safetensors`` file or a folder of ``.safetensors``
    shards (safetensors tensors are read when looked up); one-line InvalidSpecError otherwise."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise InvalidSpecError(f"sqnr weights folder {path} holds no .safetensors file; give a weights file or a "
                                   "checkpoint folder")
        try:
            return _Shards([SafetensorsFile(p) for p in shards])
        except (OSError, ValueError) as err:
            raise InvalidSpecError(f"cannot read sqnr weights in {path}: {type(err).__name__}: {err}") from None
    if not path.is_file():
        raise InvalidSpecError(f"sqnr weights file {path} does not exist; give an .npz or .safetensors file of per-layer weights")
    try:
        if path.suffix == ".safetensors":
            return SafetensorsFile(path)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    except Exception as err:  # corrupt file
        raise InvalidSpecError(f"cannot read sqnr weights file {path}: {type(err).__name__}: {err}; save float32, "
                               "float16 or bfloat16 arrays with numpy.savez or safetensors' save_file") from None
    raise InvalidSpecError(f"sqnr weights file {path} must end in .npz or .safetensors, got {path.suffix or 'no suffix'!r}")


def find_weight_key(weights: Mapping[str, Any], layer_name: str) -> str | None:
    """The key of ``layer_name``'s weights: the name itself, ``NAME.weight``, or the one key that
    ends in ``.NAME.weight`` or ``.NAME`` (a checkpoint's ``model.`` prefix); None if there is none.
    InvalidSpecError if several keys end so."""
    for key in (layer_name, f"{layer_name}.weight"):
        if key in weights:
            return key
    tails = (f".{layer_name}.weight", f".{layer_name}")
    found = [k for k in weights if k.endswith(tails)]
    if len(found) > 1:
        raise InvalidSpecError(f"sqnr weights for layer {layer_name!r} are ambiguous: {', '.join(sorted(found)[:6])} "
                               "all match; name the arrays after the network's layers")
    return found[0] if found else None


class SqnrObjective(Objective):
    """Mean per-layer SQNR (dB) of the weights in ``weights_path`` under a configuration's formats."""

    name = "sqnr"
    direction = "maximize"

    def __init__(self, weights_path: str | Path):
        self.weights_path = str(weights_path)
        self._weights: Mapping[str, np.ndarray] | None = None
        self._cache: dict[tuple[str, str], float] = {}

    def spec(self) -> str:
        return f"sqnr:{self.weights_path}"

    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        if self._weights is None:
            self._weights = load_weights(self.weights_path)
        return self._weights

    def locate(self, layer: Layer) -> tuple[str, int]:
        """The key of the layer's weights and their output-channel axis, from shapes alone (nothing is
        read); InvalidSpecError if absent or misshapen."""
        weights = self.weights
        key = find_weight_key(weights, layer.name)
        if key is None:
            have = ", ".join(sorted(weights)[:12]) + (" ..." if len(weights) > 12 else "")
            raise InvalidSpecError(
                f"sqnr weights file {self.weights_path} has no array for layer {layer.name!r} (looked for "
                f"{layer.name!r}, '{layer.name}.weight' and keys ending in '.{layer.name}.weight'; it has {have}); "
                "name the arrays after the network's layers"
            )
        shape = weights.shape(key) if hasattr(weights, "shape") else tuple(weights[key].shape)
        if shape == (layer.n, layer.k):
            return key, 0  # PyTorch (out, in); a square matrix is read this way
        if shape == (layer.k, layer.n):
            return key, 1
        raise InvalidSpecError(
            f"sqnr weights {key!r} in {self.weights_path} has shape {shape}, but layer {layer.name} needs "
            f"(k, n) = ({layer.k}, {layer.n}) or (n, k) = ({layer.n}, {layer.k}); use the weights of this network"
        )

    def weight_of(self, layer: Layer) -> tuple[np.ndarray, int]:
        """The layer's weight matrix and its output-channel axis; InvalidSpecError if absent or misshapen."""
        key, axis = self.locate(layer)
        return self.weights[key], axis

    def prepare(self, network: Network) -> None:
        """Fail before the search if any layer of ``network`` has no usable weights (shapes are
        checked from the file's header: a large checkpoint is not read here)."""
        for layer in network.layers:
            self.locate(layer)

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
