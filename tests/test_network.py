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


BLOCK = '''batch = 16
chained = false
[[block]]
repeat = 3
[[block.layers]]
name = "q"
n = 64
k = 32
[[block.layers]]
name = "k"
n = 16
k = 32
[[block.layers]]
name = "down"
n = 32
k = 64
m = 4
[block.groups]
qk = ["q", "k"]
'''


def test_a_repeated_block_expands_to_prefixed_layers_and_ties_in_order(tmp_path):
    net = load_network(write(tmp_path, BLOCK))
    assert net.layer_names == ("b0.q", "b0.k", "b0.down", "b1.q", "b1.k", "b1.down", "b2.q", "b2.k", "b2.down")
    assert [(l.m, l.n, l.k) for l in net.layers[3:6]] == [(16, 64, 32), (16, 16, 32), (4, 32, 64)]
    assert net.groups == (("b0.qk", ("b0.q", "b0.k")), ("b1.qk", ("b1.q", "b1.k")), ("b2.qk", ("b2.q", "b2.k")))


def test_blocks_follow_one_another_and_an_empty_prefix_keeps_names(tmp_path):
    text = BLOCK + '[[block]]\nprefix = ""\n[[block.layers]]\nname = "head"\nn = 8\nk = 32\n[groups]\nends = ["b0.down", "head"]\n'
    net = load_network(write(tmp_path, text))
    assert net.layer_names[-2:] == ("b2.down", "head")
    assert dict(net.groups)["ends"] == ("b0.down", "head")


@pytest.mark.parametrize("text, message", [
    (BLOCK.replace("repeat = 3", "repeat = 0"), r"block\[0\].repeat must be an integer in \[1, 10000\], got 0"),
    (BLOCK.replace("repeat = 3", "repeat = 3\nprefix = \"\""), r"block\[0\].prefix may be empty only with repeat = 1"),
    (BLOCK.replace("repeat = 3", "repeat = 3\ncount = 2"), r"block\[0\] has unknown field 'count'"),
    (BLOCK.replace('qk = ["q", "k"]', 'qk = ["q", "o"]'), r"block\[0\].groups.qk names unknown layer 'o'; this block's layers are q, k, down"),
    (BLOCK.replace('n = 16', 'n = -16'), r"block\[0\].layers\[1\] \(k\).n must be an integer"),
    (BLOCK + '[[block]]\n[[block.layers]]\nname = "x"\nn = 8\nk = 8\n', r"block\[1\].prefix 'b' is already used by block\[0\]"),
    ('batch = 2\n[[block]]\nrepeat = 2\n', r"block\[0\] needs \[\[block.layers\]\] tables"),
    (BLOCK + '[[layers]]\nname = "x"\nn = 8\nk = 8\n', "give exactly one of .* got layers and block"),
    (BLOCK + '[groups]\n"b0.qk" = ["b1.down", "b2.down"]\n', "groups.b0.qk is given twice"),
])
def test_bad_blocks_are_one_line_errors_naming_the_block(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InvalidSpecError, match=message) as err:
        load_network(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_importing_a_torch_module_without_torch_is_a_one_line_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # what an environment without torch sees
    with pytest.raises(InvalidSpecError, match="importing a PyTorch module needs torch: pip install torch"):
        Network.from_torch(object(), ())
