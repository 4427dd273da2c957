"""Number formats a layer can run in, and which GPU architectures accelerate each one.

Architectures are integer compute capabilities (80 = sm_80 A100, 86 = sm_86, 89 = sm_89 L40S/Ada,
90 = sm_90 H100/H200). Support per architecture is one of three levels:

- ``accelerated``: the format has a tensor-core path on that architecture;
- ``emulated``: kernels run, but without tensor cores (int4 on Hopper: the sm_80 kernels run,
  measured at ~38 TOPS on an H100, far below int8); allowed only when asked for, with a warning;
- unsupported: no kernel can run it (fp8 before sm_89).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

from mpsearch.errors import InvalidSpecError, UnsupportedConfigError

ACCELERATED = "accelerated"
EMULATED = "emulated"


@dataclass(frozen=True)
class NumberFormat:
    """One number format for a GEMM's operands.

    ``bits`` is the operand width (the capacity objective uses it); ``storage_bytes`` is the memory
    an element takes (0.5 for int4, packed two per byte); ``accumulator`` is the type the tensor cores
    accumulate in; ``support`` maps a compute capability to ACCELERATED or EMULATED.
    """

    name: str
    bits: int
    kind: str  # "float" or "int"
    accumulator: str
    support: tuple[tuple[int, str], ...]
    description: str

    @property
    def storage_bytes(self) -> float:
        return self.bits / 8

    @property
    def alignment(self) -> int:
        """Elements per 16-byte access: K (and N for outputs) must be a multiple of this."""
        return 128 // self.bits

    def support_on(self, arch: int) -> str | None:
        """ACCELERATED, EMULATED or None (cannot run) on compute capability ``arch``."""
        table = dict(self.support)
        if arch in table:
            return table[arch]
        # A newer minor revision of a known major architecture behaves like the closest older one
        # of the same major (sm_87 like sm_86); a different major is unknown, hence unsupported.
        same_major = [a for a in table if a // 10 == arch // 10 and a <= arch]
        return table[max(same_major)] if same_major else None


_AMPERE = ((80, ACCELERATED), (86, ACCELERATED), (89, ACCELERATED), (90, ACCELERATED))

FORMATS: dict[str, NumberFormat] = {
    f.name: f
    for f in (
        NumberFormat("fp16", 16, "float", "fp32", _AMPERE, "IEEE half precision"),
        NumberFormat("bf16", 16, "float", "fp32", _AMPERE, "bfloat16"),
        NumberFormat(
            "fp8_e4m3", 8, "float", "fp32", ((89, ACCELERATED), (90, ACCELERATED)),
            "OCP fp8 E4M3 (Ada and Hopper tensor cores)",
        ),
        NumberFormat("int8", 8, "int", "int32", _AMPERE, "8-bit integer, per-tensor scale"),
        NumberFormat(
            "int4", 4, "int", "int32",
            ((80, ACCELERATED), (86, ACCELERATED), (89, ACCELERATED), (90, EMULATED)),
            "4-bit integer packed two per byte; Hopper has no int4 tensor cores",
        ),
    )
}

ALIASES = {"fp8": "fp8_e4m3", "e4m3": "fp8_e4m3", "half": "fp16", "f16": "fp16", "s8": "int8", "s4": "int4"}

# The default menu per architecture: the accelerated formats with distinct bit widths. bf16 is left
# out because it has fp16's bits and speed: it would double the space without moving the front.
_DEFAULT_MENUS = {
    80: ("fp16", "int8", "int4"),
    86: ("fp16", "int8", "int4"),
    89: ("fp16", "fp8_e4m3", "int8"),
    90: ("fp16", "fp8_e4m3", "int8"),
}


# The reduction dimension K a GEMM in a format must be a multiple of (A and B rows run along K).
# int4 operands are packed two per byte and its only kernels (the sm_80 int4 ones, also run emulated
# on sm_90) load 32 elements at a time (CUTLASS's sm_80 int4 kernels: alignment 32/32/8); fp8 kernels exist only as
# sm_89/sm_90 TMA kernels, whose rows must be 16-byte aligned. fp16, bf16 and int8 have kernels of
# smaller alignment (slower, but they run), so no K is impossible for them.
MIN_K_MULTIPLE = {"int4": 32, "fp8_e4m3": 16}


def check_k_alignment(layer: str, k: int, fmt: str) -> None:
    """UnsupportedConfigError if layer ``layer`` with reduction dimension ``k`` cannot run in ``fmt``.

    Backends call it for each GEMM they are asked to price; the message names the layer, the
    dimension, the multiple the format needs, and the fix.
    """
    name = get_format(fmt).name
    multiple = MIN_K_MULTIPLE.get(name)
    if multiple and k % multiple:
        padded = -(-k // multiple) * multiple
        raise UnsupportedConfigError(
            f"layer {layer} cannot run in {name}: its k={k} is not a multiple of {multiple}, which {name} "
            f"kernels need (operand rows are loaded {multiple} elements at a time); keep {layer} out of "
            f"{name} or pad k to {padded}"
        )


def get_format(name: str) -> NumberFormat:
    """The format called ``name`` (aliases such as ``fp8`` accepted)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    try:
        return FORMATS[key]
    except KeyError:
        known = ", ".join(list(FORMATS) + sorted(ALIASES))
        raise InvalidSpecError(f"unknown format {name!r}: use one of {known}") from None


def parse_menu(text: str | Iterable[str]) -> tuple[str, ...]:
    """Canonical format names from ``"fp16,fp8,int8"`` or a list; order kept, repeats refused."""
    items = [s for s in (text.split(",") if isinstance(text, str) else text)]
    names = [get_format(s).name for s in items if s.strip()]
    if not names:
        raise InvalidSpecError("the format menu is empty: give at least one format, e.g. --formats fp16,int8")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidSpecError(f"the format menu names {', '.join(dupes)} twice: list each format once")
    return tuple(names)


def default_menu(arch: int) -> tuple[str, ...]:
    """The menu a study gets on compute capability ``arch`` when the user names none."""
    if arch in _DEFAULT_MENUS:
        return _DEFAULT_MENUS[arch]
    same_major = [a for a in _DEFAULT_MENUS if a // 10 == arch // 10 and a <= arch]
    if same_major:
        return _DEFAULT_MENUS[max(same_major)]
    raise UnsupportedConfigError(
        f"no default format menu for sm_{arch}: mpsearch knows sm_80, sm_86, sm_89 and sm_90; "
        "pass --formats explicitly"
    )


def check_menu(menu: Iterable[str], arch: int, *, warn: bool = True) -> tuple[str, ...]:
    """Validate ``menu`` for ``arch``: refuse formats that cannot run, warn for emulated ones.

    Returns the emulated formats in the menu (so studies can record them).
    """
    emulated = []
    for name in menu:
        level = get_format(name).support_on(arch)
        if level is None:
            raise UnsupportedConfigError(
                f"format {name} cannot run on sm_{arch}: remove it from --formats "
                f"(sm_{arch} runs {', '.join(n for n, f in FORMATS.items() if f.support_on(arch))})"
            )
        if level == EMULATED:
            emulated.append(name)
    if emulated and warn:
        warnings.warn(
            f"format(s) {', '.join(emulated)} have no tensor-core path on sm_{arch} and run emulated "
            "(much slower); they are in the menu because you asked for them",
            stacklevel=2,
        )
    return tuple(emulated)
