"""examples/digits_accuracy: the accuracy plug-in on a real (small) model, and the documented run."""

import json

import numpy as np
import pandas as pd
import pytest

from examples.digits_accuracy import proxy
from mpsearch.network import load_network
from mpsearch.objectives import parse_objective
from mpsearch.objectives.sqnr import SqnrObjective
from mpsearch.space import SearchSpace

from .conftest import REPO

EXAMPLE = REPO / "examples" / "digits_accuracy"
NET = load_network(EXAMPLE / "digits.toml")
FP16 = {"fc1": "fp16", "fc2": "fp16", "fc3": "fp16"}


def test_unquantized_forward_pass_reproduces_the_trained_models_accuracy():
    model = proxy.load_model()
    meta = json.loads(str(model["meta"]))
    pred = np.argmax(proxy.logits(None), axis=1)
    assert np.mean(pred == model["y_test"]) == pytest.approx(meta["float_test_accuracy"])  # sklearn's own score
    assert abs(proxy.accuracy(FP16) - meta["float_test_accuracy"]) <= 1 / meta["test_size"]


@pytest.mark.parametrize("layer", ["fc1", "fc2", "fc3"])
def test_each_layers_format_reaches_the_output(layer):
    base = proxy.logits(FP16)
    for fmt in ("fp8_e4m3", "int8", "int4"):
        assert not np.allclose(proxy.logits({**FP16, layer: fmt}), base, rtol=0, atol=1e-3)


def test_accuracy_objective_changes_when_a_layers_format_changes():
    objective = parse_objective("accuracy=examples.digits_accuracy.proxy:accuracy:maximize")
    space = SearchSpace(NET, ("fp16", "int4"))
    full = objective.evaluate(NET, space.parse_config("fp16,fp16,fp16")).value
    int4_fc2 = objective.evaluate(NET, space.parse_config("fp16,int4,fp16")).value
    assert int4_fc2 < full
    all_int4 = objective.evaluate(NET, space.parse_config("int4,int4,int4")).value
    assert all_int4 < full


def test_a_configuration_for_another_network_is_refused():
    with pytest.raises(ValueError, match="the digits MLP has layers fc1, fc2, fc3"):
        proxy.accuracy({"q": "fp16", "k": "fp16"})


def test_network_spec_matches_the_cached_weights():
    # The same file serves the sqnr proxy, which checks every layer's (k, n) against the spec.
    SqnrObjective(EXAMPLE / "mlp_weights.npz").prepare(NET)
    assert NET.layer_names == tuple(proxy.layer_names(proxy.load_model()))


@pytest.mark.slow
def test_documented_search_and_report_run_on_a_cpu(cli, tmp_path):
    r = cli("search", str(EXAMPLE / "digits.toml"), "--objective", "latency",
            "--objective", "accuracy=examples.digits_accuracy.proxy:accuracy:maximize",
            "--backend", "roofline", "--trials", "40", "--no-progress", timeout=120)
    assert r.returncode == 0, r.stderr
    r = cli("report", "digits-mlp", "--html-js", "cdn")
    assert r.returncode == 0, r.stderr
    trials = pd.read_csv(tmp_path / "reports" / "digits-mlp" / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert done["config"].nunique() == 27  # the 3-format space of 3 layers, all seen
    for _, row in done.drop_duplicates("config").iterrows():  # stored values are the proxy's
        assert row["accuracy"] == pytest.approx(proxy.accuracy(dict(zip(NET.layer_names, row["config"].split(",")))))


def test_plugin_path_resolves_from_the_repo_root_with_the_console_script(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "mpsearch"
    if not script.exists():
        pytest.skip("the mpsearch console script is not installed next to this Python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user types it
    r = subprocess.run([str(script), "search", "examples/digits_accuracy/digits.toml", "--storage", f"sqlite:///{tmp_path}/d.db",
                        "--objective", "latency", "--objective", "accuracy=examples.digits_accuracy.proxy:accuracy:maximize",
                        "--backend", "roofline", "--trials", "2", "--no-progress"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
