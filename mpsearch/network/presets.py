"""Built-in networks, by name: the reference MLP and Llama-3-8B decoder blocks."""

from __future__ import annotations

from mpsearch.errors import InvalidSpecError
from mpsearch.network.core import Layer, Network


def _mlp(name: str, sizes: list[int], batch: int, description: str) -> Network:
    return Network(
        name,
        tuple(Layer(f"fc{i + 1}", batch, sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)),
        description=description,
    )


# Llama-3-8B decoder block: hidden 4096, 32 query heads and 8 key/value heads of 128 (k, v project
# to 1024), feed-forward 14336 (config.json of meta-llama/Meta-Llama-3-8B). The presets keep their
# short names and no ties so studies stored with them stay comparable; Network.from_hf_config gives
# the same shapes with Hugging Face's module names and q/k/v, gate/up tied.
_LLAMA8B = (("q", 4096, 4096), ("k", 1024, 4096), ("v", 1024, 4096), ("o", 4096, 4096),
            ("gate", 14336, 4096), ("up", 14336, 4096), ("down", 4096, 14336))


def _llama8b(name: str, tokens: int, blocks: int, description: str) -> Network:
    layers = []
    for b in range(blocks):
        prefix = f"b{b}." if blocks > 1 else ""
        layers += [Layer(prefix + lname, tokens, n, k) for lname, n, k in _LLAMA8B]
    return Network(name, tuple(layers), chained=False, description=description)


_PRESET_BUILDERS = {
    "mlp6": lambda: _mlp("mlp6", [32768, 16384, 8192, 4096, 2048, 1024, 32768], 2048,
                         "reference 6-layer MLP 32768-16384-8192-4096-2048-1024-32768, batch 2048"),
    "mlp6-decode": lambda: _mlp("mlp6-decode", [32768, 16384, 8192, 4096, 2048, 1024, 32768], 16,
                                "the reference MLP at batch 16 (decode-like)"),
    "llama8b-block-prefill": lambda: _llama8b("llama8b-block-prefill", 2048, 1,
                                              "one Llama-3-8B decoder block's 7 GEMMs, 2048 tokens (prefill)"),
    "llama8b-block-decode": lambda: _llama8b("llama8b-block-decode", 16, 1,
                                             "one Llama-3-8B decoder block's 7 GEMMs, 16 tokens (decode)"),
    "llama8b-10blocks-prefill": lambda: _llama8b("llama8b-10blocks-prefill", 2048, 10,
                                                 "10 Llama-3-8B decoder blocks, 70 GEMMs, 2048 tokens"),
}
PRESETS = tuple(_PRESET_BUILDERS)


def preset(name: str) -> Network:
    """The built-in network ``name`` (one of :data:`PRESETS`); one-line InvalidSpecError otherwise."""
    try:
        return _PRESET_BUILDERS[name]()
    except KeyError:
        raise InvalidSpecError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}, a TOML file, "
                               "a Hugging Face config.json or MODULE:CALLABLE") from None
