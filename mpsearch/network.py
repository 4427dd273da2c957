"""Network specs: an ordered list of GEMM layers, tied groups, presets and TOML loading.

A layer computes ``Y[m, n] = X[m, k] @ W[k, n]``: ``m`` is rows (batch × tokens), ``k`` the input
activation dimension, ``n`` the output dimension.

**Boundaries.** In a *chained* network (an MLP) layer i's output is layer i+1's input, so layer i's
GEMM writes its output in layer i+1's format (the last layer writes fp16): the price of a format
change is paid in the epilogue. The network's input arrives in the first layer's format. In an
*unchained* network (a transformer block, where norms, attention and activations sit between GEMMs
and run in fp16) every layer reads an fp16 activation, converts it to its own format if that differs
(a separate conversion op), and writes fp16. :meth:`Network.ops` is the one place that spells this
out; every backend prices exactly those ops.

TOML format (every field is checked on load; errors name the file, the field, the rule and the value)::

    name = "my-mlp"
    batch = 2048                 # default m for layers that give none
    chained = true               # default true
    sizes = [4096, 1024, 4096]   # shorthand for an MLP: layers fc1..fcN, k = sizes[i], n = sizes[i+1]
    # or, instead of sizes, explicit layers:
    [[layers]]
    name = "q"
    k = 4096
    n = 4096
    m = 2048                     # optional when batch is given
    [groups]                     # optional: layers that must share one format
    qkv = ["q", "k", "v"]
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mpsearch.errors import InvalidSpecError
from mpsearch.validation import reserved_layer_name

# Largest dimension accepted: far above any real layer, it catches typos (an extra zero or two).
MAX_DIM = 1 << 24


@dataclass(frozen=True)
class Layer:
    name: str
    m: int
    n: int
    k: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k


@dataclass(frozen=True)
class Op:
    """One unit of work a backend prices: a GEMM (``fmt`` in, ``out_fmt`` out) or a conversion of
    ``m × k`` fp16 elements to ``out_fmt`` (``fmt`` is then the source format)."""

    kind: str  # "gemm" or "convert"
    layer: str
    m: int
    n: int
    k: int
    fmt: str
    out_fmt: str


@dataclass(frozen=True)
class Network:
    name: str
    layers: tuple[Layer, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    chained: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        _validate(self, where=f"network {self.name!r}")

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def ops(self, formats: Iterable[str]) -> list[Op]:
        """The GEMMs and conversions that run this network with ``formats`` (one per layer)."""
        formats = list(formats)
        if len(formats) != len(self.layers):
            raise InvalidSpecError(
                f"network {self.name!r} has {len(self.layers)} layers but {len(formats)} formats were given"
            )
        ops: list[Op] = []
        last = len(self.layers) - 1
        for i, (layer, fmt) in enumerate(zip(self.layers, formats)):
            if self.chained:
                out_fmt = formats[i + 1] if i < last else "fp16"
            else:
                out_fmt = "fp16"
                if fmt != "fp16":
                    ops.append(Op("convert", layer.name, layer.m, 0, layer.k, "fp16", fmt))
            ops.append(Op("gemm", layer.name, layer.m, layer.n, layer.k, fmt, out_fmt))
        return ops

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chained": self.chained,
            "description": self.description,
            "layers": [{"name": l.name, "m": l.m, "n": l.n, "k": l.k} for l in self.layers],
            "groups": {g: list(members) for g, members in self.groups},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> "Network":
        return _parse(data, source)

    def fingerprint(self) -> str:
        """Hash of what determines latency and capacity (shapes, order, ties, chaining), not names."""
        payload = json.dumps(
            {"chained": self.chained, "shapes": [[l.m, l.n, l.k] for l in self.layers],
             "groups": sorted(sorted(self.layer_names.index(x) for x in m) for _, m in self.groups)},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _validate(net: Network, where: str) -> None:
    if not net.name or not isinstance(net.name, str):
        raise InvalidSpecError(f"{where}: name must be a non-empty string, got {net.name!r}")
    if not net.layers:
        raise InvalidSpecError(f"{where}: layers must list at least one layer, got none")
    seen: set[str] = set()
    for i, layer in enumerate(net.layers):
        if not isinstance(layer.name, str) or not layer.name:
            raise InvalidSpecError(f"{where}: layers[{i}].name must be a non-empty string, got {layer.name!r}")
        if layer.name in seen:
            raise InvalidSpecError(f"{where}: layers[{i}].name must be unique, got {layer.name!r} twice")
        if reserved_layer_name(layer.name):
            raise InvalidSpecError(f"{where}: layers[{i}]: {reserved_layer_name(layer.name)}")
        seen.add(layer.name)
        for dim in ("m", "n", "k"):
            value = getattr(layer, dim)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM:
                raise InvalidSpecError(
                    f"{where}: layers[{i}] ({layer.name}).{dim} must be an integer in [1, {MAX_DIM}], got {value!r}"
                )
    grouped: dict[str, str] = {}
    for gname, members in net.groups:
        if gname in seen:
            raise InvalidSpecError(f"{where}: groups.{gname} must not reuse a layer's name, got {gname!r}")
        if len(members) < 2:
            raise InvalidSpecError(f"{where}: groups.{gname} must tie at least 2 layers, got {list(members)}")
        for member in members:
            if member not in seen:
                raise InvalidSpecError(
                    f"{where}: groups.{gname} names unknown layer {member!r}; layers are {', '.join(net.layer_names)}"
                )
            if grouped.get(member) == gname:
                raise InvalidSpecError(f"{where}: groups.{gname} lists layer {member!r} twice: list each layer once")
            if member in grouped:
                raise InvalidSpecError(
                    f"{where}: groups.{gname} and groups.{grouped[member]} both contain {member!r}: a layer may be in one group"
                )
            grouped[member] = gname


def _int_field(value: Any, field_name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM:
        raise InvalidSpecError(f"{source}: {field_name} must be an integer in [1, {MAX_DIM}], got {value!r}")
    return value


def _parse(data: Mapping[str, Any], source: str) -> Network:
    known = {"name", "batch", "chained", "sizes", "layers", "groups", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidSpecError(f"{source}: unknown field {unknown[0]!r}; allowed fields are {', '.join(sorted(known))}")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise InvalidSpecError(f"{source}: name must be a non-empty string, got {name!r}")
    chained = data.get("chained", True)
    if not isinstance(chained, bool):
        raise InvalidSpecError(f"{source}: chained must be true or false, got {chained!r}")
    batch = data.get("batch")
    if batch is not None:
        batch = _int_field(batch, "batch", source)
    if ("sizes" in data) == ("layers" in data):
        raise InvalidSpecError(f"{source}: give exactly one of 'sizes' (an MLP) or '[[layers]]', got {'both' if 'sizes' in data else 'neither'}")
    layers: list[Layer] = []
    if "sizes" in data:
        sizes = data["sizes"]
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise InvalidSpecError(f"{source}: sizes must be a list of at least 2 integers, got {sizes!r}")
        if batch is None:
            raise InvalidSpecError(f"{source}: batch is required with sizes (the m of every layer), got none")
        dims = [_int_field(s, f"sizes[{i}]", source) for i, s in enumerate(sizes)]
        layers = [Layer(f"fc{i + 1}", batch, dims[i + 1], dims[i]) for i in range(len(dims) - 1)]
    else:
        raw = data["layers"]
        if not isinstance(raw, list) or not raw:
            raise InvalidSpecError(f"{source}: layers must be a non-empty list of tables, got {raw!r}")
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                raise InvalidSpecError(f"{source}: layers[{i}] must be a table with name, n, k (and m), got {entry!r}")
            extra = sorted(set(entry) - {"name", "m", "n", "k"})
            if extra:
                raise InvalidSpecError(f"{source}: layers[{i}] has unknown field {extra[0]!r}; allowed: name, m, n, k")
            lname = entry.get("name")
            if not isinstance(lname, str) or not lname:
                raise InvalidSpecError(f"{source}: layers[{i}].name must be a non-empty string, got {lname!r}")
            if "m" not in entry and batch is None:
                raise InvalidSpecError(f"{source}: layers[{i}] ({lname}).m is required when no batch is given")
            dims = {}
            for dim in ("m", "n", "k"):
                if dim == "m" and "m" not in entry:
                    dims[dim] = batch
                    continue
                if dim not in entry:
                    raise InvalidSpecError(f"{source}: layers[{i}] ({lname}).{dim} is required, got none")
                dims[dim] = _int_field(entry[dim], f"layers[{i}] ({lname}).{dim}", source)
            layers.append(Layer(lname, dims["m"], dims["n"], dims["k"]))
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, Mapping):
        raise InvalidSpecError(f"{source}: groups must be a table of name = [layer, ...], got {groups_raw!r}")
    groups = []
    for gname, members in groups_raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InvalidSpecError(f"{source}: groups.{gname} must be a list of layer names, got {members!r}")
        groups.append((gname, tuple(members)))
    description = data.get("description", "")
    return Network(name, tuple(layers), tuple(groups), chained, str(description))


def _build_checked(data: Mapping[str, Any], source: str) -> Network:
    try:
        return _parse(data, source)
    except InvalidSpecError as err:
        # _validate inside Network() names the network; re-anchor the message on the file.
        msg = str(err)
        if not msg.startswith(source):
            msg = f"{source}: {msg.split(': ', 1)[-1]}"
        raise InvalidSpecError(msg) from None


def load_network(path: str | Path) -> Network:
    """Load and validate a TOML network spec."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidSpecError(f"{path}: no such network file; give a TOML file or a preset ({', '.join(PRESETS)})") from None
    except OSError as err:
        raise InvalidSpecError(f"{path}: cannot read the network file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise InvalidSpecError(f"{path}: not a UTF-8 text file (byte {err.object[err.start]:#04x} at offset {err.start}); "
                               "a network spec is a TOML text file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidSpecError(f"{path}: malformed TOML: {err}") from None
    return _build_checked(data, str(path))


# --- presets ---------------------------------------------------------------------------------

def _mlp(name: str, sizes: list[int], batch: int, description: str) -> Network:
    return Network(
        name,
        tuple(Layer(f"fc{i + 1}", batch, sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)),
        description=description,
    )


# Llama-3-8B decoder block: hidden 4096, 32 query heads and 8 key/value heads of 128 (k, v project
# to 1024), feed-forward 14336 (config.json of meta-llama/Meta-Llama-3-8B).
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
    try:
        return _PRESET_BUILDERS[name]()
    except KeyError:
        raise InvalidSpecError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)} or a TOML file path") from None


def resolve_network(spec: str) -> Network:
    """A preset name or a path to a TOML file."""
    if spec in _PRESET_BUILDERS:
        return preset(spec)
    if spec.endswith(".toml") or "/" in spec or Path(spec).exists():
        return load_network(spec)
    return preset(spec)
