"""``--backend torch`` on a real GPU: every format pair against float64, the conformance suite, and
repeatable sustained measurements. Marked ``gpu``: skipped where there is no NVIDIA GPU (CI)."""

from __future__ import annotations

import pytest

from mpsearch.network import Layer, Network, Op, preset
from mpsearch.space import Config
from mpsearch.testing import LatencyBackendConformance

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def backend():
    from mpsearch.backends.pytorch import TorchBackend

    b = TorchBackend()
    yield b
    b.close()


@pytest.mark.parametrize("fmt,out", [("fp16", "fp16"), ("fp16", "fp8_e4m3"), ("bf16", "bf16"), ("bf16", "int8"),
                                     ("fp8_e4m3", "fp16"), ("fp8_e4m3", "fp8_e4m3"), ("fp8_e4m3", "int8"),
                                     ("int8", "fp16"), ("int8", "int8"), ("int8", "fp8_e4m3")])
def test_every_format_pair_matches_the_float64_reference(backend, fmt, out):
    from mpsearch.backends.gpu.tensors import OUTPUT_ROUNDING, TOLERANCE

    record = backend.op_record(Op("gemm", "t", 256, 512, 1024, fmt, out))
    assert record["check_rel_err"] <= max(TOLERANCE[fmt], OUTPUT_ROUNDING[out]), record
    assert record["n_samples"] >= 10 and record["timing"]["regime"] == "sustained"
    assert record["kernel"].startswith({"fp16": "torch.addmm", "bf16": "torch.addmm", "fp8_e4m3": "torch._scaled_mm",
                                        "int8": "torch._int_mm"}[fmt])


def test_an_unchained_block_converts_its_inputs_and_measures_end_to_end(backend):
    block = Network("gpu-block", (Layer("q", 64, 512, 1024), Layer("up", 64, 1024, 512)), chained=False)
    backend.prepare(block, ("int8", "fp16"))
    result = backend.measure(block, Config(block.layer_names, ("int8", "fp16")))
    assert result.source == "measured" and len(result.samples) >= 10
    assert "q:convert fp16->int8" in result.extra["kernels"]


def test_consecutive_sustained_measurements_of_a_network_agree_within_one_percent(backend):
    net = preset("mlp6")
    backend.prepare(net, ("fp16", "fp8_e4m3", "int8"))
    for fmt in ("fp16", "fp8_e4m3", "int8"):
        config = Config(net.layer_names, (fmt,) * 6)
        a, b = backend.measure(net, config), backend.measure(net, config)
        assert abs(a.ms - b.ms) / a.ms <= 0.01, (fmt, a.ms, b.ms)


class TestTorchConformance(LatencyBackendConformance):
    @pytest.fixture
    def make_backend(self):
        from mpsearch.backends.pytorch import TorchBackend

        return lambda: TorchBackend()

    @pytest.fixture
    def impossible_menu(self):
        return ("int4",)
