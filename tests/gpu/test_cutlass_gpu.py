"""The CUTLASS backend on a real GPU: correctness per format, the compile cache, tuning, timing.

Marked ``gpu``: skipped where there is no NVIDIA GPU (CI). On a GPU host the first run compiles the
kernels it needs (minutes, in parallel); set MPSEARCH_CACHE_DIR to reuse a warm cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mpsearch.network import Layer, Network, Op
from mpsearch.space import Config
from mpsearch.testing import LatencyBackendConformance
from tests.conftest import REPO

pytestmark = pytest.mark.gpu

M, N, K = 256, 512, 1024  # small, but several tiles in every direction; K a multiple of every tile's K


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return os.environ.get("MPSEARCH_CACHE_DIR") or str(tmp_path_factory.mktemp("cutlass-cache"))


@pytest.fixture(scope="session")
def backend(cache_dir):
    from mpsearch.backends.cutlass import CutlassBackend

    b = CutlassBackend(cache_dir=cache_dir)
    yield b
    b.close()


@pytest.fixture
def paired_backend(backend):
    """The session's backend timing networks against the reference (--timing paired), for one test."""
    backend.against_reference = True
    yield backend
    backend.against_reference = False


def gemm(fmt: str, out: str = "fp16", m: int = M, n: int = N, k: int = K) -> Op:
    return Op("gemm", "t", m, n, k, fmt, out)


@pytest.mark.parametrize("fmt,out", [("fp16", "fp16"), ("bf16", "fp16"), ("fp8_e4m3", "fp16"), ("fp8_e4m3", "fp8_e4m3"),
                                     ("int8", "fp16"), ("int8", "int8"), ("int4", "fp16"), ("fp16", "int4")])
def test_every_format_pair_matches_the_float64_reference(backend, fmt, out):
    from mpsearch.backends.gpu.tensors import OUTPUT_ROUNDING, TOLERANCE

    tol = max(TOLERANCE[fmt], OUTPUT_ROUNDING[out])  # the input's tolerance, or one output rounding step
    record = backend.tune(gemm(fmt, out))
    assert record["check_rel_err"] <= tol, record
    passed = {t: c for t, c in record["candidates"].items() if "median_ms" in c}
    assert passed, record["candidates"]
    assert all(c["check_rel_err"] <= tol for c in passed.values())


def test_a_kernel_that_gives_wrong_results_fails_its_check(backend):
    import torch

    from mpsearch.backends.gpu import tensors as runtime

    ref = torch.randn(64, 64, dtype=torch.float64, device="cuda")
    expected = runtime.round_into(ref, "fp16")
    wrong = expected.clone()
    wrong[3, 5] += 1.0  # one element off by a unit: far above fp16 rounding over the whole tensor
    assert runtime.check_output(expected, "fp16", expected, "fp16")[0]
    ok, rel, reason = runtime.check_output(wrong, "fp16", expected, "fp16")
    assert not ok and "relative error" in reason


def test_tuning_checks_every_stage1_design_and_picks_the_fastest_it_kept_timing(backend):
    from mpsearch.backends.cutlass import catalog

    for fmt in ("fp16", "fp8_e4m3", "int8"):
        record = backend.tune(gemm(fmt, m=2048, n=4096, k=4096), local_search=False)
        timed = {label: c for label, c in record["candidates"].items() if "median_ms" in c}
        tiles = {c["tile"] for c in timed.values()}
        assert len(tiles) >= len(catalog.STAGE1) - 1, record["candidates"]  # compiled, checked and timed
        kept = {label: c["median_ms"] for label, c in timed.items() if c["stop"] != "eliminated"}
        assert record["candidate"] == min(kept, key=kept.get)
        assert record["stage"] == 1 and record["timing"]["regime"] == "sustained"


def test_the_local_search_times_the_winner_beside_its_neighbours(backend):
    op = gemm("fp16", m=2048, n=4096, k=4096)
    first = backend.tune(op, local_search=False)
    backend._tuned.pop(f"gemm {op.m}x{op.n}x{op.k} fp16->fp16")
    second = backend.tune(op, local_search=True)
    assert second["stage"] == 2
    tiles = {c["tile"] for c in second["candidates"].values() if "tile" in c}
    assert first["tile"] in tiles and len(tiles) > len({c["tile"] for c in first["candidates"].values() if "tile" in c})


def test_consecutive_paired_measurements_of_a_network_agree_within_one_percent(paired_backend):
    from mpsearch.network import preset

    backend = paired_backend
    net = preset("mlp6")
    backend.prepare(net, ("fp16", "fp8_e4m3", "int8"))
    for fmt in ("fp16", "fp8_e4m3"):
        config = Config(net.layer_names, (fmt,) * 6)
        a, b = backend.measure(net, config), backend.measure(net, config)
        assert abs(a.ms - b.ms) / a.ms <= 0.01, (a.ms, b.ms)
        assert a.extra["timing"]["regime"] == "sustained" and "paired" in a.extra


def test_the_reference_timed_against_itself_has_a_ratio_of_one_and_others_their_raw_ratio(paired_backend):
    from mpsearch.backends.scale import LatencyScale
    from mpsearch.network import preset

    backend = paired_backend
    net = preset("mlp6")
    backend.prepare(net, ("fp16", "fp8_e4m3", "int8"))
    scale = LatencyScale.from_record(backend.scale_record(net), "test")
    itself = backend.measure(net, Config(net.layer_names, scale.formats))
    assert abs(itself.extra["paired"]["ratio"] - 1) <= 0.01, itself.extra["paired"]
    other = backend.measure(net, Config(net.layer_names, ("int8",) * 6))
    pair = other.extra["paired"]
    assert other.ms == pytest.approx(pair["ratio"] * scale.ms, rel=1e-3)
    assert pair["ratio"] == pytest.approx(pair["target_median_ms"] / pair["reference_median_ms"], rel=0.02)
    assert other.extra["timing"]["n_samples"] == len(other.samples)
    assert f"timed alternately with the reference {','.join(scale.formats)}" in other.detail


def test_an_adopted_scale_sets_the_level_of_every_latency(paired_backend):
    from mpsearch.network import preset

    backend = paired_backend
    net = preset("mlp6")
    backend.prepare(net, ("fp16", "fp8_e4m3", "int8"))
    record = backend.scale_record(net)
    config = Config(net.layer_names, ("fp8_e4m3",) * 6)
    before = backend.measure(net, config)
    backend.adopt_scale(net, {**record, "ms": record["ms"] * 2}, "test")
    try:
        after = backend.measure(net, config)
    finally:
        backend.adopt_scale(net, record, "test")
    assert after.ms / before.ms == pytest.approx(2, rel=0.02)


def test_a_warm_rerun_compiles_nothing(backend, cache_dir):
    backend.compile_pairs([("fp16", "fp16"), ("int8", "int8")])
    code = (
        "import json, sys\n"
        "from mpsearch.backends.cutlass import CutlassBackend\n"
        f"b = CutlassBackend(cache_dir={cache_dir!r}, progress=lambda line: None)\n"
        "b.compile_pairs([('fp16', 'fp16'), ('int8', 'int8')])\n"
        "r = b.compile_reports[-1] if b.compile_reports else None\n"
        "print(json.dumps({'compiled': r.compiled if r else 0, 'cached': r.cached if r else -1, 'loaded': len(b._kernels)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["compiled"] == 0
    assert report["cached"] == report["loaded"] >= 8


def test_measure_is_end_to_end_with_samples_kernels_and_conversions(backend):
    import torch

    block = Network("gpu-block", (Layer("q", 64, 512, 1024), Layer("up", 64, 1024, 512)), chained=False)
    config = Config(block.layer_names, ("int8", "fp16"))
    backend.prepare(block, ("int8", "fp16"))
    result = backend.measure(block, config)
    assert result.source == "measured" and "paired" not in result.extra  # --timing sustained: timed alone
    assert result.device == torch.cuda.get_device_name(0)
    assert len(result.samples) >= 10 and result.ms > 0
    assert result.extra["timing"]["n_samples"] == len(result.samples)
    assert len(result.per_layer_ms) == 2
    assert any(label.startswith("q:convert fp16->int8") for label in result.extra["kernels"])
    assert set(result.extra["check_rel_err"]) == set(result.extra["kernels"])


def test_an_int4_output_is_a_gemm_plus_a_separate_conversion(backend):
    mlp = Network("gpu-mlp", (Layer("fc1", 128, 512, 1024), Layer("fc2", 128, 256, 512)))
    backend.prepare(mlp, ("fp16", "int4"))
    result = backend.measure(mlp, Config(mlp.layer_names, ("fp16", "int4")))
    assert "separate" in result.extra["kernels"]["fc1:gemm fp16->int4"]
    assert result.extra["emulated"] == ["int4"]


class TestCutlassConformance(LatencyBackendConformance):
    @pytest.fixture
    def make_backend(self, cache_dir):
        from mpsearch.backends.cutlass import CutlassBackend

        return lambda: CutlassBackend(cache_dir=cache_dir)
