"""Network specs: an ordered list of GEMM layers, tied groups, and where they come from.

- :mod:`mpsearch.network.core`: :class:`Layer`, :class:`Network`, :class:`Op` and the TOML format
  (with ``[[block]]`` repetition);
- :mod:`mpsearch.network.presets`: built-in networks by name;
- :mod:`mpsearch.network.hf`: a Hugging Face ``config.json`` (:meth:`Network.from_hf_config`);
- :mod:`mpsearch.network.torch_capture`: a PyTorch module run on example inputs (:meth:`Network.from_torch`);
- :func:`resolve_network`: the one string the command line takes, to a network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mpsearch.errors import InvalidSpecError
from mpsearch.network.core import MAX_DIM, Layer, Network, Op, load_network
from mpsearch.network.layer import tie_name
from mpsearch.network.presets import PRESETS, preset
from mpsearch.usercode import import_user_file, import_user_module, user_attribute

__all__ = ["Layer", "Network", "Op", "MAX_DIM", "PRESETS", "load_network", "preset", "resolve_network", "tie_name"]

# MODULE:CALLABLE, MODULE a dotted import path or a .py file.
_CODE_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_JSON_OPTIONS = ("tokens", "blocks", "name")


def resolve_network(spec: str, *, tokens: int | None = None, blocks: int | None = None,
                    allow_code: bool = True) -> Network:
    """The network a command-line string names. ``spec`` is one of:

    - a preset name (:data:`PRESETS`);
    - a ``.toml`` file (:func:`load_network`);
    - a Hugging Face ``config.json`` (any ``.json`` path), optionally followed by options:
      ``path/config.json:tokens=2048,blocks=2`` (``tokens``, ``blocks``, ``name``; see
      :meth:`Network.from_hf_config`). ``tokens``/``blocks`` may be given as arguments instead (a
      command line's ``--tokens``/``--blocks``), not both ways with different values;
    - ``MODULE:CALLABLE`` (``mypkg.models:build`` or ``models.py:build``): imports MODULE (from the
      current directory too, after installed packages) and calls CALLABLE with no arguments; it returns a Network or
      ``(nn.Module, example_inputs)``, which :meth:`Network.from_torch` captures.

    ``MODULE:CALLABLE`` runs the user's code: pass only strings the user typed, never ones read back
    from a stored study (a study stores the resulting layer list; rebuild it with
    :meth:`Network.from_dict`), and ``allow_code=False`` where code must not run. Bad input raises a
    one-line InvalidSpecError.
    """
    if not isinstance(spec, str) or not spec:
        raise InvalidSpecError(f"a network must be a preset, a TOML file, a config.json or MODULE:CALLABLE, got {spec!r}")
    json_path, options = _split_json_options(spec)
    if json_path is None and (tokens is not None or blocks is not None):
        raise InvalidSpecError(f"tokens and blocks apply to a Hugging Face config.json, not to {spec!r}")
    if json_path is not None:
        for key, value in (("tokens", tokens), ("blocks", blocks)):
            if value is not None and options.get(key, value) != value:
                raise InvalidSpecError(f"{spec}: {key} is given as {options[key]} in the spec and as {value}: give it once")
            if value is not None:
                options[key] = value
        return Network.from_hf_config(json_path, **options)
    if spec in PRESETS:
        return preset(spec)
    code = _CODE_SPEC.match(spec)
    if code and not Path(spec).exists():
        if not allow_code:
            raise InvalidSpecError(f"{spec!r} names code to run (MODULE:CALLABLE), which is not allowed here; "
                                   "give a preset, a TOML file or a config.json")
        return _network_from_code(code["module"], code["attr"])
    if spec.endswith(".toml") or "/" in spec or Path(spec).exists():
        return load_network(spec)
    return preset(spec)


def _split_json_options(spec: str) -> tuple[str | None, dict[str, Any]]:
    """``("path.json", {options})`` for a config.json spec, ``(None, {})`` for anything else."""
    path, sep, opts = spec.partition(".json:")
    if sep:
        path += ".json"
    elif spec.endswith(".json"):
        return spec, {}
    else:
        return None, {}
    options: dict[str, Any] = {}
    for item in opts.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in _JSON_OPTIONS:
            raise InvalidSpecError(f"{spec}: options after {path}: are KEY=VALUE separated by commas, KEY one of "
                                   f"{', '.join(_JSON_OPTIONS)}; got {item!r}")
        if key in options:
            raise InvalidSpecError(f"{spec}: {key} is given twice")
        if key == "name":
            options[key] = value.strip()
            continue
        try:
            options[key] = int(value)
        except ValueError:
            raise InvalidSpecError(f"{spec}: {key} must be an integer, got {value!r}") from None
    return path, options


def _network_from_code(module_name: str, attr: str) -> Network:
    where = f"{module_name}:{attr}"
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise InvalidSpecError(f"{where}: no such file {module_name}")
            module = import_user_file(path)
        else:
            module = import_user_module(module_name)
    except InvalidSpecError:
        raise
    except Exception as err:
        detail = " ".join(str(err).split())
        raise InvalidSpecError(f"{where}: cannot import {module_name}: {type(err).__name__}: {detail}") from None
    try:
        target = user_attribute(module, attr)
    except AttributeError:
        raise InvalidSpecError(f"{where}: {module_name} has no attribute {attr!r}") from None
    if not callable(target):
        raise InvalidSpecError(f"{where}: {attr} must be a callable returning (nn.Module, example_inputs) or a "
                               f"Network, got {type(target).__name__}")
    try:
        built = target()
    except Exception as err:
        detail = " ".join(str(err).split())
        raise InvalidSpecError(f"{where}: calling {attr}() failed: {type(err).__name__}: {detail}") from None
    if isinstance(built, Network):
        return built
    if isinstance(built, tuple) and len(built) == 2:
        return Network.from_torch(built[0], built[1])
    raise InvalidSpecError(f"{where}: {attr}() must return (nn.Module, example_inputs) or a Network, "
                           f"got {type(built).__name__}")
