"""Train the example MLP on scikit-learn's bundled digits and cache it in ``mlp_weights.npz``.

Run from the repository root: ``python -m examples.digits_accuracy.train`` (a few seconds on a CPU).
The result is committed, so the objective never trains; rerun only to change the model.

The cached file holds, per layer ``fcI``: ``fcI.weight`` (k, n) and ``fcI.bias``; ``fcI.act_amax``,
the largest |input| of the layer over the *training* set (the calibrated range its activations are
quantized to, as post-training quantization does); the held-out test images (``x_test``, raw 0-16
pixels) and labels; and how it was made (``meta``, JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "mlp_weights.npz"
HIDDEN = (128, 64)
SEED = 0
PIXEL_MAX = 16.0  # digits pixels are integers 0..16


def train(path: Path = WEIGHTS) -> dict:
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", max_iter=600, random_state=SEED)
    model.fit(x_train / PIXEL_MAX, y_train)

    arrays: dict[str, np.ndarray] = {}
    h = x_train / PIXEL_MAX
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_), start=1):
        arrays[f"fc{i}.weight"] = w.astype(np.float32)
        arrays[f"fc{i}.bias"] = b.astype(np.float32)
        arrays[f"fc{i}.act_amax"] = np.float32(np.max(np.abs(h)))
        h = h @ w + b
        if i < len(model.coefs_):
            h = np.maximum(h, 0.0)
    meta = {
        "dataset": "sklearn.datasets.load_digits (1797 8x8 images), 25% held out, stratified",
        "model": f"MLPClassifier(hidden_layer_sizes={HIDDEN}, activation='relu', random_state={SEED})",
        "sklearn": sklearn.__version__,
        "float_test_accuracy": float(model.score(x_test / PIXEL_MAX, y_test)),
        "test_size": int(len(y_test)),
    }
    arrays["x_test"] = x_test.astype(np.uint8)
    arrays["y_test"] = y_test.astype(np.uint8)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)
    return meta


if __name__ == "__main__":
    print(json.dumps(train(), indent=1))
