"""``mpsearch bench``: measure one configuration and show where its latency goes.

    mpsearch bench mlp6 --config fp8,fp8,fp16,int8,int8,fp8 --backend cutlass
    mpsearch bench llama8b-block-decode --config-file per-layer.toml

A config file is TOML mapping layer names to formats, at top level or under ``[formats]``; a
``default`` entry sets every layer not named::

    default = "fp16"
    fc1 = "fp8"
    fc2 = "int8"
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from mpsearch.errors import InvalidSpecError


def register(sub: Any) -> None:
    from mpsearch.cli.args import add_backend_args, add_network_arg

    p = sub.add_parser("bench", help="measure one configuration: per-layer and end-to-end latency",
                       description="Measure one configuration of a network and print per-layer and end-to-end "
                                   "latency with their spread, the kernels chosen and their check errors.",
                       epilog="example: mpsearch bench mlp6 --config fp8,fp8,fp16,int8,int8,fp8 --backend cutlass")
    add_network_arg(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="one format per layer in layer order, e.g. fp8,fp8,fp16,int8,int8,fp8")
    which.add_argument("--config-file", help="TOML file: layer = format (and optionally default = format)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    add_backend_args(p, default="auto")
    p.set_defaults(func=run)


def load_config_file(path: str | Path, layer_names: tuple[str, ...]) -> list[str]:
    """Formats in layer order from a per-layer TOML file (see the module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidSpecError(f"{path}: no such config file; give a TOML file of layer = format lines") from None
    except OSError as err:
        raise InvalidSpecError(f"{path}: cannot read the config file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise InvalidSpecError(f"{path}: malformed TOML: {err}") from None
    table = data.get("formats", data) if isinstance(data.get("formats"), dict) else data
    default = table.get("default")
    unknown = sorted(k for k in table if k != "default" and k not in layer_names)
    if unknown:
        raise InvalidSpecError(f"{path}: unknown layer {unknown[0]!r}; the network's layers are {', '.join(layer_names)}")
    formats = []
    for name in layer_names:
        value = table.get(name, default)
        if value is None:
            raise InvalidSpecError(f"{path}: layer {name!r} has no format; add {name} = \"fp16\" or a default = \"...\" line")
        if not isinstance(value, str):
            raise InvalidSpecError(f"{path}: {name} must be a format name string, got {value!r}")
        formats.append(value)
    return formats


def run(args: argparse.Namespace) -> int:
    from mpsearch.backends import make_backend
    from mpsearch.formats import parse_menu
    from mpsearch.cli.args import network_from_args
    from mpsearch.space import SearchSpace

    network = network_from_args(args)
    if args.config_file:
        formats = load_config_file(args.config_file, network.layer_names)
    else:
        formats = [f for f in args.config.split(",") if f.strip()]
    menu = parse_menu(list(dict.fromkeys(formats)))
    space = SearchSpace(network, menu)
    config = space.parse_config(",".join(formats))
    backend, reason = make_backend(args.backend, network, device=args.device, data=args.data, cache_dir=args.cache_dir,
                                   timing=args.timing, menu=space.menu)
    try:
        if not args.json:
            print(f"backend: {reason}")
        backend.prepare(network, space.menu)
        result = backend.measure(network, config)
    finally:
        backend.close()
    if args.json:
        print(json.dumps({"network": network.name, "config": config.key, "ms": result.ms,
                          "spread_ms": result.spread_ms, **result.as_attrs()}, indent=1))
        return 0
    print(render(network, config, result))
    return 0


def render(network: Any, config: Any, result: Any) -> str:
    """The bench report: one row per layer, then the end-to-end line."""
    kernels = result.extra.get("kernels", {}) if result.extra else {}
    errors = result.extra.get("check_rel_err", {}) if result.extra else {}
    ops = network.ops(config.formats)
    spreads = result.extra.get("per_op", {}) if result.extra else {}
    rows = [("layer", "m x n x k", "op", "ms", "op p10-p90", "kernel", "check err")]
    for i, layer in enumerate(network.layers):
        layer_ops = [op for op in ops if op.layer == layer.name]
        ms = f"{result.per_layer_ms[i]:.4f}" if result.per_layer_ms else "-"
        for j, op in enumerate(layer_ops):
            label = f"{op.layer}:{op.kind} {op.fmt}->{op.out_fmt}"
            err = errors.get(label)
            spread = spreads.get(label)
            rows.append((layer.name if j == 0 else "", f"{layer.m}x{layer.n}x{layer.k}" if j == 0 else "",
                         f"{op.kind} {op.fmt}->{op.out_fmt}", ms if j == len(layer_ops) - 1 else "",
                         f"{spread['p10_ms']:.4f}-{spread['p90_ms']:.4f}" if spread else "-",
                         kernels.get(label, "-"), "-" if err is None else f"{err:.2e}"))
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    sum_layers = sum(result.per_layer_ms) if result.per_layer_ms else None
    lines.append(f"{network.name} {config.key}: end to end {result.describe()}, {len(result.samples)} samples")
    if sum_layers is not None:
        lines.append(f"sum of per-layer latencies {sum_layers:.4f} ms"
                     + (f" (end to end / sum = {result.ms / sum_layers:.3f})" if sum_layers > 0 else ""))
    timing = result.extra.get("timing") if result.extra else None
    if timing:
        lines.append(timing_line(timing))
    paired = result.extra.get("paired") if result.extra else None
    if paired:
        lo, hi = paired["ratio_ci95"]
        lines.append(f"against the reference {','.join(paired['scale']['reference'])}: ratio {paired['ratio']:.4f} "
                     f"(95% CI {lo:.4f}-{hi:.4f}) x its latency {paired['scale']['ms']:.4f} ms, measured alone "
                     f"{paired['scale']['date']}; in these rounds {paired['target_median_ms']:.4f} ms against "
                     f"{paired['reference_median_ms']:.4f} ms")
    if result.extra and result.extra.get("emulated"):
        lines.append(f"emulated on this GPU (no tensor cores): {', '.join(result.extra['emulated'])}")
    if result.detail:
        lines.append(f"how: {result.detail}")
    return "\n".join(lines)


def timing_line(timing: dict[str, Any]) -> str:
    """How the end-to-end samples were taken: regime, count, stop, and the GPU's clocks and power."""
    lo, hi = timing["ci95_ms"]
    text = (f"timing: {timing['regime']} regime, {timing['n_samples']} samples, stopped by {timing['stop']} "
            f"(95% CI of the median {lo:.4f}-{hi:.4f} ms)")
    tel = timing.get("telemetry", {})
    if "absent" in tel:
        return text + f"; telemetry absent: {tel['absent']}"
    parts = []
    if "sm_mhz" in tel:
        parts.append(f"SM {tel['sm_mhz']['min']}-{tel['sm_mhz']['max']} MHz")
    if "mem_mhz" in tel:
        parts.append(f"memory {tel['mem_mhz']['median']} MHz")
    if "power_w" in tel:
        parts.append(f"power {tel['power_w']['min']:.0f}-{tel['power_w']['max']:.0f} W")
    if "temp_c" in tel:
        parts.append(f"{tel['temp_c']['max']} C")
    parts.append("clocks held by " + (", ".join(tel.get("throttle_seen", [])) or "nothing"))
    return text + "; " + ", ".join(parts)
