"""Networks from a Hugging Face ``config.json``: the GEMMs of a model's repeated blocks.

Supported ``model_type`` families and the GEMMs of one block (``H`` hidden size, ``I`` intermediate
size, ``A`` attention heads, ``KV`` key/value heads, ``D`` head size; each GEMM is ``(n, k)``):

- ``llama``, ``mistral``, ``qwen2`` (``layers.{i}.``): ``self_attn.q_proj`` (A·D, H), ``k_proj`` and
  ``v_proj`` (KV·D, H), ``o_proj`` (H, A·D), ``mlp.gate_proj`` and ``up_proj`` (I, H), ``down_proj``
  (H, I). ``KV`` is ``num_key_value_heads`` (default ``A``: no grouped-query attention), ``D`` is
  ``head_dim`` (default ``H / A``). Ties: q/k/v, gate/up.
- ``gpt2`` (``h.{i}.``): ``attn.c_attn`` (3H, H, one fused GEMM), ``attn.c_proj`` (H, H),
  ``mlp.c_fc`` (I, H; ``n_inner``, default 4H), ``mlp.c_proj`` (H, I). No ties: q/k/v is one GEMM.
- ``bert`` (``encoder.layer.{i}.``): ``attention.self.query``/``key``/``value`` (H, H),
  ``attention.output.dense`` (H, H), ``intermediate.dense`` (I, H), ``output.dense`` (H, I). Ties: q/k/v.
- ``vit``: as ``bert`` with ``attention.attention.query``/...; ``tokens`` defaults to one image's
  patches plus the class token, ``(image_size / patch_size)² + 1`` (197 for 224-pixel, 16-pixel patches).

Layers are named as in the model's base class (``LlamaModel``, ``GPT2Model``, ...), so they match the
keys of a released checkpoint (the ``sqnr`` objective finds ``model.layers.0.self_attn.q_proj.weight``
for layer ``layers.0.self_attn.q_proj``). Only the blocks: embeddings, the LM head and a ViT's patch
embedding are left out. Every layer has ``m = tokens`` and the network is unchained (norms, attention
and activations run between the GEMMs). Ties join layers that read one input (q/k/v, gate/up): they
share its conversion, so they take one format.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from mpsearch.errors import InvalidSpecError
from mpsearch.network.layer import MAX_DIM, Layer, tie_name

_MISSING = object()


class _Config:
    """Typed reads of a config dict, each failure one line naming the file and the key."""

    def __init__(self, data: Mapping[str, Any], source: str):
        self.data, self.source = data, source

    def int(self, key: str, default: Any = _MISSING) -> int:
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise InvalidSpecError(f"{self.source}: {key} is required for model_type "
                                       f"{self.data.get('model_type')!r}, got none; is this the model's config.json?")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM:
            raise InvalidSpecError(f"{self.source}: {key} must be an integer in [1, {MAX_DIM}], got {value!r}")
        return value


Block = tuple[list[tuple[str, int, int]], list[tuple[str, ...]]]  # (name, n, k) per GEMM; ties


def _llama_block(cfg: _Config) -> Block:
    hidden, heads = cfg.int("hidden_size"), cfg.int("num_attention_heads")
    kv_heads = cfg.int("num_key_value_heads", heads)
    if heads % kv_heads:
        raise InvalidSpecError(f"{cfg.source}: num_attention_heads ({heads}) must be a multiple of "
                               f"num_key_value_heads ({kv_heads})")
    if cfg.data.get("head_dim") is None and hidden % heads:
        raise InvalidSpecError(f"{cfg.source}: hidden_size ({hidden}) is not a multiple of num_attention_heads "
                               f"({heads}) and no head_dim is given")
    head_dim = cfg.int("head_dim", hidden // heads)
    inter = cfg.int("intermediate_size")
    q, kv = heads * head_dim, kv_heads * head_dim
    gemms = [("self_attn.q_proj", q, hidden), ("self_attn.k_proj", kv, hidden), ("self_attn.v_proj", kv, hidden),
             ("self_attn.o_proj", hidden, q), ("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden),
             ("mlp.down_proj", hidden, inter)]
    ties = [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("mlp.gate_proj", "mlp.up_proj")]
    return gemms, ties


def _gpt2_block(cfg: _Config) -> Block:
    hidden = cfg.int("n_embd")
    heads = cfg.int("n_head")
    if hidden % heads:
        raise InvalidSpecError(f"{cfg.source}: n_embd ({hidden}) must be a multiple of n_head ({heads})")
    inter = cfg.int("n_inner", 4 * hidden)
    return [("attn.c_attn", 3 * hidden, hidden), ("attn.c_proj", hidden, hidden),
            ("mlp.c_fc", inter, hidden), ("mlp.c_proj", hidden, inter)], []


def _encoder_block(attention: str) -> Callable[[_Config], Block]:
    def block(cfg: _Config) -> Block:
        hidden, inter = cfg.int("hidden_size"), cfg.int("intermediate_size")
        heads = cfg.int("num_attention_heads")
        if hidden % heads:
            raise InvalidSpecError(f"{cfg.source}: hidden_size ({hidden}) must be a multiple of "
                                   f"num_attention_heads ({heads})")
        qkv = tuple(f"attention.{attention}.{x}" for x in ("query", "key", "value"))
        gemms = [(name, hidden, hidden) for name in qkv] + [
            ("attention.output.dense", hidden, hidden), ("intermediate.dense", inter, hidden),
            ("output.dense", hidden, inter)]
        return gemms, [qkv]
    return block


def _vit_tokens(cfg: _Config) -> int:
    image, patch = cfg.data.get("image_size", 224), cfg.data.get("patch_size", 16)

    def pair(v: Any) -> tuple[Any, Any]:  # ViT configs give a side or (height, width)
        return (v[0], v[1]) if isinstance(v, (list, tuple)) and len(v) == 2 else (v, v)

    sides = []
    for img, pat in zip(pair(image), pair(patch)):
        ok = all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (img, pat))
        if not ok or img % pat:
            raise InvalidSpecError(f"{cfg.source}: image_size ({image!r}) must be a positive multiple of "
                                   f"patch_size ({patch!r}) to count a ViT's tokens; or give tokens")
        sides.append(img // pat)
    return sides[0] * sides[1] + 1  # the patches and the class token


# model_type → (block builder, name prefix of block i, key of the number of blocks)
_FAMILIES: dict[str, tuple[Callable[[_Config], Block], str, str]] = {
    "llama": (_llama_block, "layers.{i}.", "num_hidden_layers"),
    "mistral": (_llama_block, "layers.{i}.", "num_hidden_layers"),
    "qwen2": (_llama_block, "layers.{i}.", "num_hidden_layers"),
    "gpt2": (_gpt2_block, "h.{i}.", "n_layer"),
    "bert": (_encoder_block("self"), "encoder.layer.{i}.", "num_hidden_layers"),
    "vit": (_encoder_block("attention"), "encoder.layer.{i}.", "num_hidden_layers"),
}
SUPPORTED_MODEL_TYPES = tuple(_FAMILIES)


def read_hf_config(config: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The config dict and a name for messages, from a dict, a ``config.json`` or its folder."""
    if isinstance(config, Mapping):
        return dict(config), "config"
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidSpecError(f"{path}: no such file; give a Hugging Face config.json (or the folder holding it)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidSpecError(f"{path}: cannot read the config: {err}") from None
    except json.JSONDecodeError as err:
        raise InvalidSpecError(f"{path}: malformed JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{path}: a config.json holds one JSON object, got {type(data).__name__}")
    return data, str(path)


def hf_config_fields(config: str | Path | Mapping[str, Any], *, tokens: int | None = None,
                     blocks: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The first ``blocks`` blocks (default: all, ``num_hidden_layers``) of the model that ``config``
    describes, each GEMM with ``m = tokens`` rows (batch × sequence length; required except for ViT),
    as the fields of a :class:`~mpsearch.network.Network` (``Network(**fields)``).

    ``config``: a path to ``config.json``, the folder holding it, or the parsed dict. ``name``: the
    network's name (default: the config's ``_name_or_path`` or ``model_type``, then blocks and tokens).
    Raises InvalidSpecError (one line) for an unknown ``model_type``, a missing or invalid key, or
    ``tokens``/``blocks`` out of range.
    """
    data, source = read_hf_config(config)
    model_type = data.get("model_type")
    if model_type not in _FAMILIES:
        raise InvalidSpecError(f"{source}: model_type {model_type!r} is not supported; supported families: "
                               f"{', '.join(SUPPORTED_MODEL_TYPES)} (or describe the network in TOML)")
    cfg = _Config(data, source)
    build, prefix, depth_key = _FAMILIES[model_type]
    gemms, ties = build(cfg)
    depth = cfg.int(depth_key)
    if blocks is None:
        blocks = depth
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= depth:
        raise InvalidSpecError(f"{source}: blocks must be an integer in [1, {depth}] ({depth_key}), got {blocks!r}")
    if tokens is None:
        if model_type != "vit":
            raise InvalidSpecError(f"{source}: tokens is required for model_type {model_type!r} (the rows of every "
                                   "GEMM: batch × sequence length), e.g. tokens=2048")
        tokens = _vit_tokens(cfg)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_DIM:
        raise InvalidSpecError(f"{source}: tokens must be an integer in [1, {MAX_DIM}], got {tokens!r}")

    layers, groups = [], []
    for i in range(blocks):
        p = prefix.format(i=i)
        layers += [Layer(p + gemm, tokens, n, k) for gemm, n, k in gemms]
        for tie in ties:
            members = tuple(p + m for m in tie)
            groups.append((tie_name(members), members))
    base = str(data.get("_name_or_path") or model_type).rstrip("/").rsplit("/", 1)[-1]
    default_name = re.sub(r"[^A-Za-z0-9._+=-]+", "-", f"{base}-{blocks}blocks-{tokens}tok").strip("-.")
    description = (f"{blocks} of {depth} {model_type} blocks ({len(gemms)} GEMMs each) at {tokens} tokens, "
                   f"from {source}")
    return {"name": name or default_name, "layers": tuple(layers), "groups": tuple(groups), "chained": False,
            "description": description}
