import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.network import PRESETS, Layer, Network, load_network, preset, resolve_network


def test_mlp6_is_the_reference_network():
    net = preset("mlp6")
    assert [(l.k, l.n, l.m) for l in net.layers] == [
        (32768, 16384, 2048), (16384, 8192, 2048), (8192, 4096, 2048),
        (4096, 2048, 2048), (2048, 1024, 2048), (1024, 32768, 2048),
    ]
    assert net.chained


def test_every_preset_builds_and_the_large_transformer_has_at_least_64_layers():
    for name in PRESETS:
        assert preset(name).layers
    assert len(preset("llama8b-10blocks-prefill").layers) >= 64
    assert {l.m for l in preset("llama8b-block-decode").layers} == {16}


def test_chained_ops_write_the_next_layers_format_and_the_last_writes_fp16():
    ops = preset("mlp6").ops(["fp8_e4m3", "int8", "fp16", "fp16", "int4", "int8"])
    assert [(o.kind, o.fmt, o.out_fmt) for o in ops] == [
        ("gemm", "fp8_e4m3", "int8"), ("gemm", "int8", "fp16"), ("gemm", "fp16", "fp16"),
        ("gemm", "fp16", "int4"), ("gemm", "int4", "int8"), ("gemm", "int8", "fp16"),
    ]


def test_unchained_layers_convert_their_fp16_input_unless_they_run_fp16():
    net = preset("llama8b-block-decode")
    ops = net.ops(["int8", "fp16", "fp16", "fp16", "fp16", "fp16", "fp8_e4m3"])
    converts = [(o.layer, o.m, o.k, o.out_fmt) for o in ops if o.kind == "convert"]
    assert converts == [("q", 16, 4096, "int8"), ("down", 16, 14336, "fp8_e4m3")]
    assert all(o.out_fmt == "fp16" for o in ops if o.kind == "gemm")


def test_fingerprint_ignores_names_but_not_shapes():
    a = Network("a", (Layer("x", 8, 16, 32),))
    b = Network("b", (Layer("y", 8, 16, 32),))
    c = Network("c", (Layer("x", 8, 16, 64),))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_to_dict_round_trips():
    net = preset("llama8b-block-prefill")
    assert Network.from_dict(net.to_dict()) == net


def write(tmp_path, text, name="net.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_sizes_shorthand_and_groups(tmp_path):
    net = load_network(write(tmp_path, 'name = "m"\nbatch = 4\nsizes = [64, 32, 16]\n[groups]\nall = ["fc1", "fc2"]\n'))
    assert [(l.name, l.m, l.n, l.k) for l in net.layers] == [("fc1", 4, 32, 64), ("fc2", 4, 16, 32)]
    assert net.groups == (("all", ("fc1", "fc2")),)


def test_toml_explicit_layers_take_batch_as_default_m(tmp_path):
    net = load_network(write(tmp_path, 'batch = 8\nchained = false\n[[layers]]\nname="q"\nn=64\nk=32\n'
                                       '[[layers]]\nname="o"\nn=32\nk=64\nm=2\n'))
    assert net.name == "net" and not net.chained
    assert [(l.m, l.n, l.k) for l in net.layers] == [(8, 64, 32), (2, 32, 64)]


@pytest.mark.parametrize("text, message", [
    ('sizes = [64, 32', "malformed TOML"),
    ('batch = 4\nsizes = [64, -32]', r"sizes\[1\] must be an integer in \[1, .*got -32"),
    ('batch = 0\nsizes = [64, 32]', r"batch must be an integer .* got 0"),
    ('batch = 4\nsizes = [64, 32]\n[groups]\ng = ["fc1", "fc9"]', "groups.g names unknown layer 'fc9'"),
    ('batch = 4\nsizes = [64, 32, 16]\n[groups]\ng = ["fc1"]', "groups.g must tie at least 2 layers"),
    ('batch = 4\nsizes = [64, 32]\nlayer = 3', "unknown field 'layer'"),
    ('batch = 4', "give exactly one of 'sizes'"),
    ('[[layers]]\nname="q"\nn=64\nk=32', r"layers\[0\] \(q\).m is required"),
    ('batch=2\n[[layers]]\nname="q"\nn=64\nk=32\n[[layers]]\nname="q"\nn=64\nk=32', "name must be unique, got 'q' twice"),
    ('batch=2\n[[layers]]\nname="q"\nn=64.5\nk=32', r"layers\[0\] \(q\).n must be an integer"),
])
def test_bad_spec_files_name_the_file_the_field_and_the_value(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InvalidSpecError, match=message) as err:
        load_network(path)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(InvalidSpecError, match="unknown preset 'mlp7'.*mlp6"):
        resolve_network("mlp7")


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(InvalidSpecError, match="no such network file"):
        resolve_network(str(tmp_path / "nope.toml"))
