import math

import pytest

from mpsearch.backends.roofline import DEVICES, RooflineBackend, device_spec, op_time_ms
from mpsearch.errors import InvalidSpecError, UnsupportedConfigError
from mpsearch.formats import EMULATED, FORMATS
from mpsearch.network import Op, preset
from mpsearch.space import Config, SearchSpace


def uniform(network, fmt):
    return Config(network.layer_names, tuple(fmt for _ in network.layers))


def test_compute_bound_gemm_matches_hand_computation():
    # mlp6's fc1 on an H100 SXM in fp16: 2·2048·16384·32768 flop at 989.4 TFLOP/s, versus
    # (2048·32768 + 32768·16384 + 2048·16384)·2 bytes at 3.35 TB/s; compute wins; + 5 us launch.
    op = Op("gemm", "fc1", 2048, 16384, 32768, "fp16", "fp16")
    compute_ms = 2 * 2048 * 16384 * 32768 / 989.4e12 * 1e3
    memory_ms = (2048 * 32768 + 32768 * 16384 + 2048 * 16384) * 2 / 3.35e12 * 1e3
    assert compute_ms > memory_ms
    assert op_time_ms(op, DEVICES["h100"]) == pytest.approx(compute_ms + 0.005, rel=1e-12)
    assert op_time_ms(op, DEVICES["h100"]) == pytest.approx(2.2276, abs=1e-4)


def test_memory_bound_conversion_reads_fp16_and_writes_the_target():
    # 2048×4096 fp16 read (2 B) and int8 written (1 B) at 3.35 TB/s; no tensor-core work.
    op = Op("convert", "q", 2048, 0, 4096, "fp16", "int8")
    expected = 2048 * 4096 * 3 / 3.35e12 * 1e3 + 0.005
    assert op_time_ms(op, DEVICES["h100"]) == pytest.approx(expected, rel=1e-12)


def test_int4_on_hopper_is_priced_at_the_measured_emulation_rate():
    op = Op("gemm", "fc1", 2048, 16384, 32768, "int4", "fp16")
    expected = 2 * 2048 * 16384 * 32768 / 38e12 * 1e3 + 0.005
    assert op_time_ms(op, DEVICES["h100"]) == pytest.approx(expected, rel=1e-12)
    assert RooflineBackend("h100").capabilities.emulated == {"int4"}


def test_a_layer_writing_a_narrower_format_is_cheaper_when_memory_bound():
    # mlp6-decode is memory bound: fc1 writes fc2's input format, so int8 for fc2 makes fc1 cheaper.
    net = preset("mlp6-decode")
    backend = RooflineBackend("h100")
    fp16 = backend.measure(net, uniform(net, "fp16"))
    mixed = backend.measure(net, Config(net.layer_names, ("fp16", "int8") + ("fp16",) * 4))
    assert mixed.per_layer_ms[0] < fp16.per_layer_ms[0]


def test_result_is_the_sum_of_its_layers_and_says_it_is_a_model():
    net = preset("llama8b-block-prefill")
    backend = RooflineBackend("h200")
    config = SearchSpace(net, ("fp16", "fp8", "int8")).parse_config("fp8,fp8,int8,fp16,int8,int8,fp8")
    result = backend.measure(net, config)
    assert result.source == "model"
    assert result.device == "NVIDIA H200"
    assert "roofline" in result.detail
    assert result.samples == ()
    assert len(result.per_layer_ms) == len(net.layers)
    assert result.ms == pytest.approx(sum(result.per_layer_ms))
    # unchained: each non-fp16 layer pays a conversion, so the sum is over more ops than layers
    expected = sum(op_time_ms(op, DEVICES["h200"]) for op in net.ops(config.formats))
    assert result.ms == pytest.approx(expected)


def test_more_bandwidth_makes_memory_bound_networks_faster():
    net = preset("mlp6-decode")
    h100 = RooflineBackend("h100").measure(net, uniform(net, "fp16")).ms
    h200 = RooflineBackend("h200").measure(net, uniform(net, "fp16")).ms
    assert h200 < h100


def test_a100_refuses_fp8_in_prepare_and_measure():
    net = preset("mlp6")
    backend = RooflineBackend("a100")
    with pytest.raises(UnsupportedConfigError, match="fp8_e4m3"):
        backend.prepare(net, ("fp16", "fp8_e4m3"))
    with pytest.raises(UnsupportedConfigError, match="A100"):
        backend.measure(net, uniform(net, "fp8_e4m3"))


def test_unknown_device_names_the_known_ones():
    with pytest.raises(InvalidSpecError, match="a100, h100, h200, l40s"):
        RooflineBackend("v100")
    assert device_spec("NVIDIA L40S").key == "l40s"


@pytest.mark.parametrize("key", sorted(DEVICES))
def test_device_rates_cover_exactly_the_formats_its_arch_runs(key):
    spec = DEVICES[key]
    runnable = {name for name, f in FORMATS.items() if f.support_on(spec.arch) is not None}
    assert set(spec.peak_tflops) == runnable
    assert all(math.isfinite(r) and r > 0 for r in spec.peak_tflops.values())
    # an emulated format must be slower than every accelerated one
    emulated = [f for f in runnable if FORMATS[f].support_on(spec.arch) == EMULATED]
    accelerated = [f for f in runnable if f not in emulated]
    for f in emulated:
        assert spec.peak_tflops[f] < min(spec.peak_tflops[a] for a in accelerated)
