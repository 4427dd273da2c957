"""Who a worker is and which GPU it runs on: the names recorded on every trial it runs.

``host:pid`` is for people to read; it does not tell workers apart. Containers on different hosts
can share a hostname, and pids restart from 1 in every PID namespace, so two live workers can both
be ``node:7``. What tells them apart is a random token drawn once per process. What tells whether
a worker's process still exists is its *process namespace*: the kernel's boot id plus the PID
namespace. Only a process in the same one can look its pid up; any other worker is judged by its
heartbeat alone. The process's start time guards against a pid reused after the worker died.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mpsearch.search import attrs
from mpsearch.search.record import WORKER_ATTR

GPU_ATTR = attrs.GPU  # host, visible-device index and PCI bus of the GPU the trial ran on
WORKER_INDEX_ATTR = attrs.WORKER_INDEX
WORKER_TOKEN_ATTR = attrs.WORKER_TOKEN  # random, one per worker process: what tells workers apart
WORKER_NAMESPACE_ATTR = attrs.WORKER_NAMESPACE  # boot id + PID namespace: where the worker's pid means something
WORKER_STARTED_ATTR = attrs.WORKER_STARTED  # the worker process's start time, in clock ticks after boot


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def process_namespace() -> str | None:
    """The kernel boot id and PID namespace of this process (Linux), or None where there are none.

    Two processes with the same value see the same pids; one from another host or container does not.
    """
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{pid_ns}" if boot else None


def _proc_stat(pid: int) -> tuple[str, int | None] | None:
    """(state letter, start time in clock ticks after boot) of process ``pid`` from /proc; None if
    /proc shows no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # Fields after the command name, which is in parentheses and may itself hold spaces.
    fields = stat.rpartition(")")[2].split()
    if not fields:
        return None
    return fields[0], int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` of this namespace started (clock ticks after boot); None if /proc does
    not show it."""
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else None


@dataclass(frozen=True)
class WorkerIdentity:
    """A worker process: ``host:pid`` for people, ``token`` to tell workers apart, and where (and
    since when) its pid can be looked up."""

    host: str
    pid: int
    token: str
    namespace: str | None = None
    started: int | None = None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"

    def attrs(self) -> dict[str, Any]:
        """The trial attributes that name this worker."""
        return {WORKER_ATTR: self.label, WORKER_TOKEN_ATTR: self.token,
                WORKER_NAMESPACE_ATTR: self.namespace, WORKER_STARTED_ATTR: self.started}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "WorkerIdentity | None":
        """The worker named by a trial's attributes; None when it names no token (no owner yet, or
        a trial written before tokens existed: those are judged by their heartbeat alone)."""
        token = attrs.get(WORKER_TOKEN_ATTR)
        if not isinstance(token, str):
            return None
        host, _, pid = str(attrs.get(WORKER_ATTR, "")).rpartition(":")
        started = attrs.get(WORKER_STARTED_ATTR)
        namespace = attrs.get(WORKER_NAMESPACE_ATTR)
        return cls(host, int(pid) if pid.isdigit() else -1, token,
                   namespace if isinstance(namespace, str) else None,
                   started if isinstance(started, int) else None)

    def is_gone(self) -> bool:
        """True only when this worker's process certainly no longer exists: it lived in this
        process's namespace, and its pid is free or now belongs to a process started later."""
        if self.namespace is None or self.namespace != process_namespace() or self.pid <= 0:
            return False
        if self.pid == os.getpid():
            return self.token != this_worker().token  # this pid, an earlier process (before a fork)
        stat = _proc_stat(self.pid)
        if stat is None:  # not in /proc (or /proc hides other users' processes): ask the kernel
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        state, started = stat
        if state in ("Z", "X"):  # it has exited; only its exit status waits for its parent
            return True
        return self.started is not None and started is not None and started != self.started


_this: WorkerIdentity | None = None


def this_worker() -> WorkerIdentity:
    """This process's identity; a forked child gets its own."""
    global _this
    if _this is None or _this.pid != os.getpid():
        pid = os.getpid()
        _this = WorkerIdentity(socket.gethostname(), pid, secrets.token_hex(8), process_namespace(),
                               process_start_time(pid))
    return _this


def worker_id() -> str:
    """``host:pid`` of this process, for messages."""
    return this_worker().label


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
