"""The sqnr proxy: quantization models and the objective built on them."""

import math

import numpy as np
import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.network import Layer, Network
from mpsearch.objectives import Objective
from mpsearch.objectives.sqnr import MAX_SQNR_DB, SqnrObjective, fake_quantize, load_weights, sqnr_db
from mpsearch.space import Config

NET = Network("two", (Layer("fc1", 8, 96, 64), Layer("fc2", 8, 32, 96)))


def gaussian(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_fp8_e4m3_rounds_to_the_e4m3_grid_with_ties_to_even():
    # e4m3 has 3 mantissa bits: between 1 and 2 the step is 1/8; 448 is its largest finite value.
    x = np.array([448.0, 1.0, 1.0625, 1.1875, -3.3, 0.0])
    q = fake_quantize(x, "fp8_e4m3")  # amax = 448: scale 1, the values are cast as they are
    assert q.tolist() == [448.0, 1.0, 1.0, 1.25, -3.25, 0.0]


def test_fp8_saturates_instead_of_producing_nan_with_a_calibrated_range():
    q = fake_quantize(np.array([1.0, 5.0]), "fp8_e4m3", amax=2.0)  # 5.0 lies past the calibrated range
    assert np.isfinite(q).all() and q[1] == pytest.approx(2.0)


def test_int_formats_use_one_scale_per_output_channel():
    w = gaussian((64, 96))
    w[:, 0] *= 100.0  # one loud output channel would ruin a per-tensor scale for all the others
    per_channel = sqnr_db(w, "int8", channel_axis=1)
    per_tensor = sqnr_db(w, "int8", channel_axis=None)
    assert per_channel > per_tensor + 10
    q = fake_quantize(w, "int4", channel_axis=1)
    for c in (0, 5):  # every channel uses at most 15 levels, its own
        assert len(np.unique(q[:, c])) <= 15
        assert np.max(np.abs(q[:, c])) == pytest.approx(np.max(np.abs(w[:, c])), rel=1e-6)


def test_int8_sqnr_matches_uniform_noise_theory():
    w = gaussian((512, 256), seed=3)
    step = np.max(np.abs(w), axis=0) / 127  # per output channel
    expected = 10 * math.log10(np.sum(w.astype(np.float64) ** 2) / np.sum(w.shape[0] * step.astype(np.float64) ** 2 / 12))
    assert sqnr_db(w, "int8", channel_axis=1) == pytest.approx(expected, abs=0.3)
    # four bits fewer cost 20·log10(127/7) dB of resolution
    gap = sqnr_db(w, "int8", channel_axis=1) - sqnr_db(w, "int4", channel_axis=1)
    assert gap == pytest.approx(20 * math.log10(127 / 7), abs=1.0)


def test_more_precise_formats_keep_more_of_the_weights():
    w = gaussian((256, 256), seed=1)
    db = {f: sqnr_db(w, f, channel_axis=1) for f in ("fp16", "bf16", "int8", "fp8_e4m3", "int4")}
    assert db["fp16"] > db["bf16"] > db["int8"] > db["fp8_e4m3"] > db["int4"] > 5


def test_exact_weights_give_the_finite_cap_and_zero_weights_are_refused():
    assert sqnr_db(np.array([[1.0, 0.5], [0.25, -2.0]]), "fp16") == 200.0
    with pytest.raises(InvalidSpecError, match="all zero"):
        sqnr_db(np.zeros((4, 4)), "int8", channel_axis=1)


@pytest.fixture
def weights_npz(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, fc1=gaussian((64, 96), 1), **{"fc2.weight": gaussian((32, 96), 2)})  # fc2 as PyTorch (out, in)
    return path


def test_objective_is_the_mean_of_per_layer_sqnr_and_follows_each_layer_format(weights_npz):
    obj = SqnrObjective(weights_npz)
    assert isinstance(obj, Objective) and obj.name == "sqnr" and obj.direction == "maximize"
    assert obj.spec() == f"sqnr:{weights_npz}"
    data = np.load(weights_npz)
    config = Config(NET.layer_names, ("int8", "fp16"))
    ev = obj.evaluate(NET, config)
    expected = {"fc1": sqnr_db(data["fc1"], "int8", 1), "fc2": sqnr_db(data["fc2.weight"], "fp16", 0)}
    assert ev.value == pytest.approx(sum(expected.values()) / 2)
    assert ev.attrs["sqnr_db_per_layer"] == pytest.approx(expected, abs=1e-4)
    lower = obj.evaluate(NET, Config(NET.layer_names, ("int4", "fp16"))).value
    assert lower < ev.value - 10


def test_weights_in_either_orientation_and_file_type_give_the_same_value(tmp_path, weights_npz):
    from safetensors.numpy import save_file

    data = np.load(weights_npz)
    st = tmp_path / "w.safetensors"
    save_file({"fc1.weight": np.ascontiguousarray(data["fc1"].T), "fc2": np.ascontiguousarray(data["fc2.weight"].T)}, str(st))
    config = Config(NET.layer_names, ("int4", "fp8_e4m3"))
    assert SqnrObjective(st).evaluate(NET, config).value == pytest.approx(SqnrObjective(weights_npz).evaluate(NET, config).value)


def test_missing_or_misshapen_weights_are_one_line_errors(tmp_path, weights_npz):
    other = Network("other", (Layer("fc1", 8, 96, 64), Layer("head", 8, 32, 96)))
    with pytest.raises(InvalidSpecError, match="no array for layer 'head'.*it has fc1, fc2.weight"):
        SqnrObjective(weights_npz).prepare(other)
    wrong = Network("wrong", (Layer("fc1", 8, 100, 64), Layer("fc2", 8, 32, 96)))
    with pytest.raises(InvalidSpecError, match=r"has shape \(64, 96\), but layer fc1 needs \(k, n\) = \(64, 100\)"):
        SqnrObjective(weights_npz).prepare(wrong)
    with pytest.raises(InvalidSpecError, match="does not exist"):
        SqnrObjective(tmp_path / "none.npz").prepare(NET)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(InvalidSpecError, match="must end in .npz or .safetensors"):
        SqnrObjective(tmp_path / "w.txt").prepare(NET)


def write_safetensors(path, tensors):
    """A .safetensors file written by the format's rules (header length, JSON header, raw data), so the
    reader is checked against the format and not against itself. ``tensors``: name → (dtype, array)."""
    import json

    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    return path


def bf16_bits(w):
    import ml_dtypes

    return w.astype(ml_dtypes.bfloat16).view(np.uint16)


def test_bf16_safetensors_are_read_without_torch_as_their_exact_values(tmp_path):
    import ml_dtypes

    w = gaussian((96, 64), seed=5)
    path = write_safetensors(tmp_path / "w.safetensors", {"fc1.weight": ("BF16", bf16_bits(w)),
                                                          "fc2.weight": ("F16", gaussian((32, 96)).astype(np.float16))})
    weights = load_weights(path)
    assert weights["fc1.weight"].dtype == np.float32
    assert np.array_equal(weights["fc1.weight"], w.astype(ml_dtypes.bfloat16).astype(np.float32))
    assert weights["fc2.weight"].dtype == np.float16
    obj = SqnrObjective(path)
    per_layer = obj.evaluate(NET, Config(NET.layer_names, ("bf16", "int8"))).attrs["sqnr_db_per_layer"]
    assert per_layer["fc1"] == MAX_SQNR_DB  # bf16 weights lose nothing under bf16
    assert obj.layer_sqnr(NET.layers[0], "int8") == pytest.approx(
        sqnr_db(w.astype(ml_dtypes.bfloat16).astype(np.float32), "int8", channel_axis=0))


def test_bf16_checkpoints_written_by_torch_read_the_same_as_torch_reads_them(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 32)).to(torch.bfloat16)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    net = Network.from_torch(model, torch.randn(8, 64, dtype=torch.bfloat16))
    weights = load_weights(tmp_path / "m.safetensors")
    for name in ("0.weight", "2.weight", "0.bias"):
        assert np.array_equal(weights[name], model.state_dict()[name].float().numpy())
    obj = SqnrObjective(tmp_path / "m.safetensors")
    obj.prepare(net)  # the captured layers "0" and "2" find "0.weight" and "2.weight"
    assert obj.evaluate(net, Config(net.layer_names, ("int4", "int4"))).value < \
        obj.evaluate(net, Config(net.layer_names, ("int8", "fp8_e4m3"))).value


def test_a_checkpoints_prefix_and_shards_are_found(tmp_path):
    net = Network("hf", (Layer("layers.0.mlp.up_proj", 4, 96, 64), Layer("layers.0.mlp.down_proj", 4, 64, 96)))
    shards = tmp_path / "ckpt"
    shards.mkdir()
    up, down = gaussian((96, 64), 1), gaussian((64, 96), 2)
    write_safetensors(shards / "model-00001-of-00002.safetensors", {"model.layers.0.mlp.up_proj.weight": ("BF16", bf16_bits(up))})
    write_safetensors(shards / "model-00002-of-00002.safetensors", {"model.layers.0.mlp.down_proj.weight": ("F32", down),
                                                                    "model.norm.weight": ("F32", gaussian((64,)))})
    obj = SqnrObjective(shards)
    obj.prepare(net)
    assert obj.layer_sqnr(net.layers[1], "int8") == pytest.approx(sqnr_db(down, "int8", channel_axis=0))


def test_ambiguous_unsupported_or_corrupt_safetensors_are_one_line_errors(tmp_path):
    w = gaussian((96, 64))
    path = write_safetensors(tmp_path / "a.safetensors", {"enc.fc1.weight": ("F32", w), "dec.fc1.weight": ("F32", w),
                                                          "fc2": ("I8", np.zeros((96, 32), np.int8))})
    with pytest.raises(InvalidSpecError, match="weights for layer 'fc1' are ambiguous: dec.fc1.weight, enc.fc1.weight"):
        SqnrObjective(path).prepare(NET)
    with pytest.raises(InvalidSpecError, match="'fc2' in .* are I8; sqnr reads F32, F16 and BF16"):
        load_weights(path)["fc2"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(InvalidSpecError, match="cannot read sqnr weights file .*not a safetensors file: its first 8 bytes give a header of 1000000000 bytes"):
        load_weights(bad)
    lying = write_safetensors(tmp_path / "lying.safetensors", {"fc1": ("F32", w)})
    lying.write_bytes(lying.read_bytes()[:-8])  # the last values cut off
    with pytest.raises(InvalidSpecError, match="'fc1' lies outside the file"):
        load_weights(lying)
