"""A GEMM layer, the largest dimension accepted, and how tied groups are named: what the importers
(:mod:`mpsearch.network.hf`, :mod:`mpsearch.network.torch_capture`) need, below
:mod:`mpsearch.network.core` so that none of them imports another in a circle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


def tie_name(members: Iterable[str]) -> str:
    """A group's name from its members' names: their common dotted prefix, then the rest joined by
    ``+`` (``layers.0.self_attn.q_proj+k_proj+v_proj``), so it reads as what it ties and cannot be a
    layer's name."""
    members = list(members)
    parts = [m.split(".") for m in members]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    head = ".".join(parts[0][:common])
    rest = "+".join(".".join(p[common:]) for p in parts)
    return f"{head}.{rest}" if head else rest
