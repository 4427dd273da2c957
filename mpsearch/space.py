"""The search space: one format per layer (tied layers share one), configs, and capacity.

A **decision** is what the sampler chooses: a tied group, or a layer in no group. Optuna parameters
are named after decisions (the group's or the layer's name) and take a format name from the menu.

**Capacity** (the reference quality proxy, maximised) is the sum over layers of the layer's input
activation dimension ``k`` times the bit-width of its format::

    capacity = Σ_i  k_i × bits(format_i)

Worked example, ``mlp6`` (k = 32768, 16384, 8192, 4096, 2048, 1024; Σk = 64512):
all fp16 → 64512 × 16 = 1,032,192; all int8 → 516,096; fc1 in int4 and the rest fp16 →
1,032,192 − 32768 × 12 = 638,976.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from mpsearch.errors import InvalidSpecError
from mpsearch.formats import get_format, parse_menu
from mpsearch.network import Network


class Config(Mapping[str, str]):
    """A format per layer, in layer order; hashable, and printed as ``fp8,fp8,fp16,...``."""

    __slots__ = ("_layers", "_formats")

    def __init__(self, layers: tuple[str, ...], formats: tuple[str, ...]):
        if len(layers) != len(formats):
            raise InvalidSpecError(f"a config needs one format per layer: {len(layers)} layers, {len(formats)} formats")
        self._layers = tuple(layers)
        self._formats = tuple(get_format(f).name for f in formats)

    @property
    def formats(self) -> tuple[str, ...]:
        return self._formats

    @property
    def key(self) -> str:
        return ",".join(self._formats)

    def __getitem__(self, layer: str) -> str:
        try:
            return self._formats[self._layers.index(layer)]
        except ValueError:
            raise KeyError(layer) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __hash__(self) -> int:
        return hash((self._layers, self._formats))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._layers == other._layers and self._formats == other._formats
        return NotImplemented

    def __repr__(self) -> str:
        return f"Config({self.key})"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class SearchSpace:
    network: Network
    menu: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "menu", parse_menu(self.menu))

    @property
    def decisions(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(decision name, layers it sets), in the order of each decision's first layer."""
        group_of = {m: g for g, members in self.network.groups for m in members}
        out, done = [], set()
        for layer in self.network.layer_names:
            g = group_of.get(layer)
            if g is None:
                out.append((layer, (layer,)))
            elif g not in done:
                done.add(g)
                out.append((g, dict(self.network.groups)[g]))
        return tuple(out)

    @property
    def size(self) -> int:
        return len(self.menu) ** len(self.decisions)

    def suggest(self, trial: Any) -> Config:
        """Ask an Optuna trial for one format per decision."""
        params = {name: trial.suggest_categorical(name, list(self.menu)) for name, _ in self.decisions}
        return self.config_from_params(params)

    def config_from_params(self, params: Mapping[str, str]) -> Config:
        per_layer: dict[str, str] = {}
        for name, layers in self.decisions:
            if name not in params:
                raise InvalidSpecError(f"parameters lack decision {name!r}; expected {', '.join(n for n, _ in self.decisions)}")
            fmt = get_format(params[name]).name
            if fmt not in self.menu:
                raise InvalidSpecError(f"{name}={fmt} is not in the menu ({','.join(self.menu)})")
            for layer in layers:
                per_layer[layer] = fmt
        names = self.network.layer_names
        return Config(names, tuple(per_layer[n] for n in names))

    def params_from_config(self, config: Config) -> dict[str, str]:
        return {name: config[layers[0]] for name, layers in self.decisions}

    def parse_config(self, text: str) -> Config:
        """``"fp8,fp8,fp16,int8,int8,fp8"`` (one per layer) into a Config checked against the menu and ties."""
        formats = [f for f in text.split(",") if f.strip()]
        if len(formats) != len(self.network.layers):
            raise InvalidSpecError(
                f"config {text!r} gives {len(formats)} formats; network {self.network.name} has "
                f"{len(self.network.layers)} layers ({', '.join(self.network.layer_names)})"
            )
        config = Config(self.network.layer_names, tuple(formats))
        for name, layers in self.decisions:
            if len({config[l] for l in layers}) > 1:
                raise InvalidSpecError(f"config {text!r} gives tied group {name} ({', '.join(layers)}) different formats")
        return config

    def all_configs(self) -> Iterator[Config]:
        names = [n for n, _ in self.decisions]
        for combo in itertools.product(self.menu, repeat=len(names)):
            yield self.config_from_params(dict(zip(names, combo)))


def capacity(network: Network, config: Mapping[str, str]) -> int:
    """Σ over layers of k × bits(format): the reference representational-capacity proxy."""
    return sum(layer.k * get_format(config[layer.name]).bits for layer in network.layers)
