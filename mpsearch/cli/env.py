"""``mpsearch env``: versions, the GPU if any, and which backend ``auto`` would pick (and why)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("env", help="versions, GPU, and the backend auto would pick",
                       description="Print what mpsearch sees on this machine.",
                       epilog="example: mpsearch env --network llama8b-block-decode")
    p.add_argument("--network", default="mlp6", help="network to ask `auto` about (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object on stdout")
    p.set_defaults(func=run)


DISTRIBUTIONS = ("optuna", "numpy", "pandas", "moocore", "nvidia-cutlass", "cuda-python", "torch", "nvidia-ml-py",
                 "matplotlib", "plotly")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gpu_summary() -> str:
    """GPUs as nvidia-smi lists them, without importing CUDA into this process."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none found (no nvidia-smi on PATH)"
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi failed: {err}"
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return "; ".join(lines) if out.returncode == 0 and lines else f"none usable (nvidia-smi: {out.stderr.strip()[:200]})"


def telemetry_summary() -> str:
    """The first GPU's power limit, clock ceilings and present state through NVML (read only)."""
    from mpsearch.backends.telemetry import open_telemetry, throttle_names

    telemetry = open_telemetry()
    if not telemetry.available:
        return f"unknown: {telemetry.why_absent}"
    limits = telemetry.limits()
    now = telemetry.read()
    parts = []
    if "power_limit_w" in limits:
        parts.append(f"power limit {limits['power_limit_w']:.0f} W")
    if "max_sm_mhz" in limits:
        parts.append(f"max SM clock {limits['max_sm_mhz']} MHz, max memory clock {limits.get('max_mem_mhz', '?')} MHz")
    if now is not None:
        reasons = ", ".join(throttle_names(now.throttle)) or "none"
        parts.append(f"now SM {now.sm_mhz} MHz, memory {now.mem_mhz} MHz, {now.power_w:.0f} W, {now.temp_c} C "
                     f"(clocks held by: {reasons})")
    return "; ".join(parts) or "NVML gave no readings"


def environment(network_spec: str) -> dict[str, Any]:
    """What mpsearch sees here: versions, GPU, power and clocks, and the backend ``auto`` would pick
    for ``network_spec`` (``backend_auto``: its reason, or ``backend_auto_error`` when none works)."""
    from mpsearch import __version__
    from mpsearch.backends import make_backend
    from mpsearch.errors import MpsearchError
    from mpsearch.network import resolve_network

    env: dict[str, Any] = {
        "mpsearch": __version__, "python": platform.python_version(), "machine": platform.machine(),
        "system": platform.system(), "packages": {dist: _version(dist) for dist in DISTRIBUTIONS},
        "gpu": gpu_summary(), "gpu_power_and_clocks": telemetry_summary(),
    }
    network = resolve_network(network_spec)
    env["network"] = network.name
    try:
        backend, reason = make_backend("auto", network)
        env["backend_auto"] = reason
        backend.close()
    except MpsearchError as err:
        env["backend_auto_error"] = str(err)
    return env


def run(args: argparse.Namespace) -> int:
    env = environment(args.network)
    if args.json:
        print(json.dumps(env, indent=1))
        return 0
    print(f"mpsearch {env['mpsearch']}, Python {env['python']} ({env['machine']}, {env['system']})")
    for dist, version in env["packages"].items():
        print(f"  {dist:15s} {version}")
    print(f"GPU: {env['gpu']}")
    print(f"GPU power and clocks: {env['gpu_power_and_clocks']}")
    if "backend_auto" in env:
        print(f"backend auto for {env['network']}: {env['backend_auto']}")
    else:
        print(f"backend auto for {env['network']}: none usable: {env['backend_auto_error']}")
    return 0
