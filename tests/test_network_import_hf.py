"""Networks from Hugging Face config.json files give the shapes and ties a hand-written spec gives."""

import json
from pathlib import Path

import pytest

from mpsearch.errors import InvalidSpecError
from mpsearch.network import Network, load_network, preset, resolve_network
from tests.network_shapes import structure, tied_names

MODELS = Path(__file__).parent / "data" / "models"


def test_llama3_8b_config_is_the_hand_written_32_block_spec():
    imported = Network.from_hf_config(MODELS / "llama3-8b" / "config.json", tokens=2048)
    by_hand = load_network(MODELS / "llama3-8b.toml")
    assert len(imported.layers) == 224
    assert imported.layer_names == by_hand.layer_names  # same names too: HF's module paths
    assert structure(imported) == structure(by_hand)
    assert tied_names(imported) == tied_names(by_hand)
    assert imported.fingerprint() == by_hand.fingerprint()


def test_one_llama3_block_has_the_shapes_of_the_built_in_preset():
    one = Network.from_hf_config(MODELS / "llama3-8b" / "config.json", tokens=2048, blocks=1)
    built_in = preset("llama8b-block-prefill")
    assert [(l.m, l.n, l.k) for l in one.layers] == [(l.m, l.n, l.k) for l in built_in.layers]
    assert one.chained is built_in.chained is False
    assert tied_names(one) == [("layers.0.mlp.gate_proj", "layers.0.mlp.up_proj"),
                               ("layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj", "layers.0.self_attn.v_proj")]


def test_gpt2_config_is_the_hand_written_spec_with_qkv_fused_and_no_ties():
    imported = Network.from_hf_config(MODELS / "gpt2" / "config.json", tokens=1024)
    by_hand = load_network(MODELS / "gpt2.toml")
    assert imported.layer_names == by_hand.layer_names
    assert structure(imported) == structure(by_hand)
    assert imported.groups == ()


def hand_block(tokens, gemms, ties, prefix, blocks):
    """A network dict written out from (name, n, k) per GEMM, as a user would type it."""
    layers, groups = [], {}
    for b in range(blocks):
        p = prefix.format(b)
        layers += [{"name": p + name, "m": tokens, "n": n, "k": k} for name, n, k in gemms]
        groups.update({f"{p}{i}": [p + m for m in tie] for i, tie in enumerate(ties)})
    return Network.from_dict({"name": "by-hand", "chained": False, "layers": layers, "groups": groups})


LLAMA_TIES = [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("mlp.gate_proj", "mlp.up_proj")]


def llama_gemms(hidden, q, kv, inter):
    return [("self_attn.q_proj", q, hidden), ("self_attn.k_proj", kv, hidden), ("self_attn.v_proj", kv, hidden),
            ("self_attn.o_proj", hidden, q), ("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden),
            ("mlp.down_proj", hidden, inter)]


@pytest.mark.parametrize("model, tokens, blocks, expected", [
    # Qwen2-0.5B: 14 heads of 896/14 = 64, 2 key/value heads → k, v project to 128.
    ("qwen2-0.5b", 512, 2, lambda: hand_block(512, llama_gemms(896, 896, 128, 4864), LLAMA_TIES, "layers.{}.", 2)),
    # Mistral-7B: as Llama-3-8B's block, 8 key/value heads of 128.
    ("mistral-7b", 64, 3, lambda: hand_block(64, llama_gemms(4096, 4096, 1024, 14336), LLAMA_TIES, "layers.{}.", 3)),
    # head_dim 32 given, not 96 / 4 = 24: q projects to 4 × 32 = 128, k and v to 2 × 32 = 64.
    ("tiny-mistral-head-dim", 8, None, lambda: hand_block(8, llama_gemms(96, 128, 64, 160), LLAMA_TIES, "layers.{}.", 3)),
    ("bert-base-uncased", 128, 1, lambda: hand_block(128, [
        ("attention.self.query", 768, 768), ("attention.self.key", 768, 768), ("attention.self.value", 768, 768),
        ("attention.output.dense", 768, 768), ("intermediate.dense", 3072, 768), ("output.dense", 768, 3072)],
        [("attention.self.query", "attention.self.key", "attention.self.value")], "encoder.layer.{}.", 1)),
    # ViT-B/16 at 224 pixels: (224 / 16)² = 196 patches and the class token.
    ("vit-base-patch16-224", None, 2, lambda: hand_block(197, [
        ("attention.attention.query", 768, 768), ("attention.attention.key", 768, 768),
        ("attention.attention.value", 768, 768), ("attention.output.dense", 768, 768),
        ("intermediate.dense", 3072, 768), ("output.dense", 768, 3072)],
        [("attention.attention.query", "attention.attention.key", "attention.attention.value")], "encoder.layer.{}.", 2)),
])
def test_each_family_gives_the_hand_written_block(model, tokens, blocks, expected):
    imported = Network.from_hf_config(MODELS / model / "config.json", tokens=tokens, blocks=blocks)
    by_hand = expected()
    assert imported.layer_names == by_hand.layer_names
    assert structure(imported) == structure(by_hand)
    assert tied_names(imported) == tied_names(by_hand)


def test_blocks_default_to_every_layer_of_the_model():
    assert len(Network.from_hf_config(MODELS / "bert-base-uncased" / "config.json", tokens=8).layers) == 12 * 6


def test_a_config_dict_and_the_folder_work_like_the_file():
    path = MODELS / "gpt2" / "config.json"
    from_dict = Network.from_hf_config(json.loads(path.read_text()), tokens=16, blocks=2)
    from_dir = Network.from_hf_config(path.parent, tokens=16, blocks=2)
    assert structure(from_dict) == structure(from_dir) == structure(Network.from_hf_config(path, tokens=16, blocks=2))


def test_the_name_says_model_blocks_and_tokens():
    net = Network.from_hf_config(MODELS / "llama3-8b" / "config.json", tokens=2048, blocks=2)
    assert net.name == "Meta-Llama-3-8B-2blocks-2048tok"
    assert Network.from_hf_config(MODELS / "gpt2" / "config.json", tokens=4, blocks=1, name="g").name == "g"


def write_config(tmp_path, **cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


LLAMA = dict(model_type="llama", hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2)


@pytest.mark.parametrize("cfg, kwargs, message", [
    (dict(model_type="mixtral"), {"tokens": 8}, "model_type 'mixtral' is not supported; supported families: "
                                                 "llama, mistral, qwen2, gpt2, bert, vit"),
    ({}, {"tokens": 8}, "model_type None is not supported"),
    ({**LLAMA, "hidden_size": None}, {"tokens": 8}, "hidden_size is required for model_type 'llama'"),
    ({**LLAMA, "num_key_value_heads": 3}, {"tokens": 8}, r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"),
    ({**LLAMA, "intermediate_size": 1.5}, {"tokens": 8}, r"intermediate_size must be an integer in \[1, .*got 1.5"),
    (LLAMA, {}, "tokens is required for model_type 'llama'"),
    (LLAMA, {"tokens": 8, "blocks": 3}, r"blocks must be an integer in \[1, 2\] \(num_hidden_layers\), got 3"),
    (LLAMA, {"tokens": 0}, r"tokens must be an integer in \[1, "),
    (dict(model_type="vit", hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=1,
          image_size=224, patch_size=15), {}, r"image_size \(224\) must be a positive multiple of patch_size \(15\)"),
])
def test_bad_configs_are_one_line_errors_naming_the_file_and_key(tmp_path, cfg, kwargs, message):
    path = write_config(tmp_path, **cfg)
    with pytest.raises(InvalidSpecError, match=message) as err:
        Network.from_hf_config(path, **kwargs)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_missing_or_malformed_config_file_is_one_line(tmp_path):
    with pytest.raises(InvalidSpecError, match="no such file"):
        Network.from_hf_config(tmp_path / "config.json", tokens=8)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidSpecError, match="malformed JSON"):
        Network.from_hf_config(bad, tokens=8)


def test_resolve_network_reads_a_config_json_with_inline_or_separate_options():
    path = MODELS / "llama3-8b" / "config.json"
    inline = resolve_network(f"{path}:tokens=16,blocks=2")
    separate = resolve_network(str(path), tokens=16, blocks=2)
    assert structure(inline) == structure(separate)
    assert len(inline.layers) == 14 and {l.m for l in inline.layers} == {16}
    assert resolve_network(f"{path}:tokens=16,blocks=1,name=mine").name == "mine"


@pytest.mark.parametrize("spec, kwargs, message", [
    ("{path}:tokens=16,layers=2", {}, "KEY one of tokens, blocks, name; got 'layers=2'"),
    ("{path}:tokens=sixteen", {}, "tokens must be an integer, got 'sixteen'"),
    ("{path}:tokens=16", {"tokens": 32}, "tokens is given as 16 in the spec and as 32"),
    ("mlp6", {"tokens": 32}, "tokens and blocks apply to a Hugging Face config.json"),
])
def test_resolve_network_options_are_checked(spec, kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        resolve_network(spec.format(path=MODELS / "gpt2" / "config.json"), **kwargs)
