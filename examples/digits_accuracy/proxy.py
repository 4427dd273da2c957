"""Accuracy objective plug-in: test accuracy of the digits MLP with every layer quantized to its format.

Use it as ``--objective accuracy=examples.digits_accuracy.proxy:accuracy:maximize`` (from the
repository root). For each layer, in a chained network (layer i's output is written in layer i+1's
format, the last layer writes fp16):

- weights: int8/int4 symmetric with one scale per output channel; fp8 e4m3 with one scale per tensor
  (exact e4m3 rounding, ml_dtypes); fp16/bf16 casts;
- activations (the layer's input): one scale per tensor for int8/int4/fp8, set from the range
  calibrated on the training set (``fcI.act_amax``); values past it saturate; fp16/bf16 casts;
- the product accumulates in float32 (the tensor cores accumulate in fp32 / int32) and the bias is
  added in the epilogue.

The quantizers are mpsearch's own (:func:`mpsearch.objectives.sqnr.fake_quantize`), so this proxy and
the ``sqnr`` proxy model the formats the same way.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from mpsearch.objectives.sqnr import fake_quantize

WEIGHTS = Path(__file__).resolve().parent / "mlp_weights.npz"
PIXEL_MAX = 16.0


@lru_cache(maxsize=1)
def load_model(path: str = str(WEIGHTS)) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def layer_names(model: Mapping[str, np.ndarray]) -> list[str]:
    return sorted((k.removesuffix(".weight") for k in model if k.endswith(".weight")), key=lambda n: int(n[2:]))


def logits(formats: Mapping[str, str] | None, model: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The MLP's test-set logits with layer ``fcI`` in ``formats[fcI]`` (None: float32, no quantization)."""
    model = model if model is not None else load_model()
    h = model["x_test"].astype(np.float32) / PIXEL_MAX
    names = layer_names(model)
    for i, name in enumerate(names):
        w, b = model[f"{name}.weight"], model[f"{name}.bias"]
        if formats is not None:
            fmt = formats[name]
            h = fake_quantize(h, fmt, amax=model[f"{name}.act_amax"])
            w = fake_quantize(w, fmt, channel_axis=1)  # weights are (k, n): one scale per output column
        h = h @ w + b
        if i < len(names) - 1:
            h = np.maximum(h, 0.0)
    return h if formats is None else fake_quantize(h, "fp16")  # the last layer writes fp16


def accuracy(config: Mapping[str, str], network: object = None) -> float:
    """Fraction of the 450 held-out digits classified right with ``config``'s formats (a plug-in
    objective: ``f(config, network) -> float``; ``config`` maps fc1, fc2, fc3 to format names)."""
    model = load_model()
    names = layer_names(model)
    missing = [n for n in names if n not in config]
    if missing or len(config) != len(names):
        raise ValueError(
            f"the digits MLP has layers {', '.join(names)}; the configuration gives {', '.join(config)}: "
            "search examples/digits_accuracy/digits.toml"
        )
    return _accuracy(tuple(config[n] for n in names))


@lru_cache(maxsize=None)
def _accuracy(formats: tuple[str, ...]) -> float:
    model = load_model()
    pred = np.argmax(logits(dict(zip(layer_names(model), formats)), model), axis=1)
    return float(np.mean(pred == model["y_test"]))
