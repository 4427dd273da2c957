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

    # or, instead of sizes/layers, repeated blocks (in order; one or more [[block]] tables):
    [[block]]
    repeat = 32                  # default 1
    prefix = "b"                 # default "b": repetition r names layer "q" "b{r}.q" (b0.q, b1.q, ...);
                                 # "" (with repeat = 1 only) keeps the names as written, e.g. for a head
    [[block.layers]]             # the block's layers, as [[layers]] above
    name = "q"
    k = 4096
    n = 4096
    [block.groups]               # optional: ties inside each repetition (b0.qkv = [b0.q, b0.k, b0.v], ...)
    qkv = ["q", "k", "v"]

Top-level ``[groups]`` name the full layer names (``b3.q``). A network also comes from a Hugging Face
``config.json`` (:meth:`Network.from_hf_config`) or a PyTorch module run on example inputs
(:meth:`Network.from_torch`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mpsearch.errors import InvalidSpecError
from mpsearch.network.layer import MAX_DIM, Layer
from mpsearch.validation import reserved_layer_name

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

    @classmethod
    def from_toml(cls, path: str | Path) -> "Network":
        """A TOML network spec (format above); see :func:`load_network`."""
        return load_network(path)

    @classmethod
    def from_hf_config(cls, config: str | Path | Mapping[str, Any], *, tokens: int | None = None,
                       blocks: int | None = None, name: str | None = None) -> "Network":
        """The decoder/encoder blocks of a Hugging Face model from its ``config.json`` (a path or the
        parsed dict): see :func:`mpsearch.network.hf.hf_config_fields`."""
        from mpsearch.network.hf import hf_config_fields

        return cls(**hf_config_fields(config, tokens=tokens, blocks=blocks, name=name))

    @classmethod
    def from_torch(cls, module: Any, example_inputs: Any, *, name: str | None = None,
                   chained: bool | None = None) -> "Network":
        """The GEMMs a PyTorch ``module`` runs on ``example_inputs``, in execution order: see
        :func:`mpsearch.network.torch_capture.torch_fields` (needs torch)."""
        from mpsearch.network.torch_capture import torch_fields

        return cls(**torch_fields(module, example_inputs, name=name, chained=chained))

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
    group_names: set[str] = set()
    for gname, members in net.groups:
        if gname in group_names:
            raise InvalidSpecError(f"{where}: groups.{gname} is given twice: name each group once")
        group_names.add(gname)
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


# A [[block]] repeated more often than this is a typo (real models have at most a few hundred blocks).
MAX_REPEAT = 10_000


def _check_table(entry: Any, allowed: tuple[str, ...], described: str, source: str, at: str) -> None:
    """``entry`` is a table (``[[...]]``) with no field outside ``allowed`` (``described``: what it should hold)."""
    if not isinstance(entry, Mapping):
        raise InvalidSpecError(f"{source}: {at} must be a table with {described}, got {entry!r}")
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise InvalidSpecError(f"{source}: {at} has unknown field {extra[0]!r}; allowed: {', '.join(allowed)}")


def _parse_layer_tables(raw: Any, batch: int | None, source: str, where: str) -> list[Layer]:
    """The ``[[layers]]``-style tables at ``where`` (``layers`` or ``block[i].layers``)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidSpecError(f"{source}: {where} must be a non-empty list of tables, got {raw!r}")
    layers = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        _check_table(entry, ("name", "m", "n", "k"), "name, n, k (and m)", source, at)
        lname = entry.get("name")
        if not isinstance(lname, str) or not lname:
            raise InvalidSpecError(f"{source}: {at}.name must be a non-empty string, got {lname!r}")
        if "m" not in entry and batch is None:
            raise InvalidSpecError(f"{source}: {at} ({lname}).m is required when no batch is given")
        dims = {}
        for dim in ("m", "n", "k"):
            if dim == "m" and "m" not in entry:
                dims[dim] = batch
                continue
            if dim not in entry:
                raise InvalidSpecError(f"{source}: {at} ({lname}).{dim} is required, got none")
            dims[dim] = _int_field(entry[dim], f"{at} ({lname}).{dim}", source)
        layers.append(Layer(lname, dims["m"], dims["n"], dims["k"]))
    return layers


def _parse_groups(raw: Any, source: str, where: str) -> list[tuple[str, tuple[str, ...]]]:
    if not isinstance(raw, Mapping):
        raise InvalidSpecError(f"{source}: {where} must be a table of name = [layer, ...], got {raw!r}")
    groups = []
    for gname, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InvalidSpecError(f"{source}: {where}.{gname} must be a list of layer names, got {members!r}")
        groups.append((gname, tuple(members)))
    return groups


def _parse_blocks(raw: Any, batch: int | None, source: str) -> tuple[list[Layer], list[tuple[str, tuple[str, ...]]]]:
    """Expand ``[[block]]`` tables: each block's layers (and groups) ``repeat`` times, in order,
    repetition r of a block with prefix P naming layer ``x`` as ``P{r}.x`` (``b0.q``, ``b1.q``, ...)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidSpecError(f"{source}: block must be one or more [[block]] tables, got {raw!r}")
    layers: list[Layer] = []
    groups: list[tuple[str, tuple[str, ...]]] = []
    prefixes: dict[str, int] = {}
    for bi, block in enumerate(raw):
        where = f"block[{bi}]"
        _check_table(block, ("repeat", "prefix", "layers", "groups"), "repeat, prefix, layers (and groups)", source, where)
        repeat = block.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
            raise InvalidSpecError(f"{source}: {where}.repeat must be an integer in [1, {MAX_REPEAT}], got {repeat!r}")
        prefix = block.get("prefix", "b")
        if not isinstance(prefix, str):
            raise InvalidSpecError(f"{source}: {where}.prefix must be a string, got {prefix!r}")
        if prefix == "" and repeat > 1:
            raise InvalidSpecError(f"{source}: {where}.prefix may be empty only with repeat = 1 (the repetitions "
                                   f"need distinct names), got repeat = {repeat}: give a prefix such as \"b\"")
        if prefix in prefixes:
            raise InvalidSpecError(f"{source}: {where}.prefix {prefix!r} is already used by block[{prefixes[prefix]}]: "
                                   "give each [[block]] its own prefix")
        prefixes[prefix] = bi
        if "layers" not in block:
            raise InvalidSpecError(f"{source}: {where} needs [[block.layers]] tables (name, n, k), got none")
        template = _parse_layer_tables(block["layers"], batch, source, f"{where}.layers")
        names = {l.name for l in template}
        tgroups = _parse_groups(block.get("groups", {}), source, f"{where}.groups")
        for gname, members in tgroups:
            unknown = [m for m in members if m not in names]
            if unknown:
                raise InvalidSpecError(f"{source}: {where}.groups.{gname} names unknown layer {unknown[0]!r}; "
                                       f"this block's layers are {', '.join(l.name for l in template)}")
        for r in range(repeat):
            p = f"{prefix}{r}." if prefix else ""
            layers += [Layer(p + l.name, l.m, l.n, l.k) for l in template]
            groups += [(p + g, tuple(p + m for m in members)) for g, members in tgroups]
    return layers, groups


def _parse(data: Mapping[str, Any], source: str) -> Network:
    known = {"name", "batch", "chained", "sizes", "layers", "block", "groups", "description"}
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
    given = [f for f in ("sizes", "layers", "block") if f in data]
    if len(given) != 1:
        raise InvalidSpecError(f"{source}: give exactly one of 'sizes' (an MLP), '[[layers]]' or '[[block]]' "
                               f"(repeated layers), got {' and '.join(given) if given else 'neither'}")
    layers: list[Layer] = []
    groups: list[tuple[str, tuple[str, ...]]] = []
    if "sizes" in data:
        sizes = data["sizes"]
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise InvalidSpecError(f"{source}: sizes must be a list of at least 2 integers, got {sizes!r}")
        if batch is None:
            raise InvalidSpecError(f"{source}: batch is required with sizes (the m of every layer), got none")
        dims = [_int_field(s, f"sizes[{i}]", source) for i, s in enumerate(sizes)]
        layers = [Layer(f"fc{i + 1}", batch, dims[i + 1], dims[i]) for i in range(len(dims) - 1)]
    elif "layers" in data:
        layers = _parse_layer_tables(data["layers"], batch, source, "layers")
    else:
        layers, groups = _parse_blocks(data["block"], batch, source)
    groups += _parse_groups(data.get("groups", {}), source, "groups")
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
        raise InvalidSpecError(f"{path}: no such network file; give a TOML file, a config.json or a preset name "
                               "(mpsearch search --help lists them)") from None
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
