"""Who a worker is and which GPU it runs on: the names recorded on every trial it runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

GPU_ATTR = "gpu"  # host, visible-device index and PCI bus of the GPU the trial ran on
WORKER_INDEX_ATTR = "worker_index"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(owner: str) -> bool:
    """True when ``owner`` (host:pid) is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user: alive
    return False


def _gpu_bus_ids() -> list[str]:
    """PCI bus ids of this host's NVIDIA GPUs, in bus order (the driver's /proc entries)."""
    return sorted(Path(p).name for p in Path("/proc/driver/nvidia/gpus").glob("*")) if Path("/proc/driver/nvidia/gpus").exists() else []


def visible_gpus() -> list[str]:
    """The device ids a worker can be pinned to: CUDA_VISIBLE_DEVICES' entries if set, else one
    index per GPU of this host (in PCI bus order, which the launched workers are told to use)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(len(_gpu_bus_ids()))]


def gpu_identity() -> str:
    """``host`` plus the GPU this process is pinned to (index and PCI bus), or ``host cpu``."""
    host = socket.gethostname()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    buses = _gpu_bus_ids()
    if not buses:
        return f"{host} cpu"
    if env is None:
        return f"{host} all GPUs ({len(buses)})"
    first = env.split(",")[0].strip()
    bus = ""
    if first.isdigit() and os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" and int(first) < len(buses):
        bus = f" ({buses[int(first)]})"
    return f"{host} GPU {first}{bus}"
