"""Fake latency backends and plug-in objectives that inject faults (tests/test_faults.py,
tests/test_distributed.py). The plug-ins are imported by path, as a user's would be.

- :class:`FakeBackend`: a deterministic latency per configuration, an optional sleep (so several
  workers really interleave), and one fault, injected on the configurations ``when`` selects:
  ``oom`` (the GPU runs out of memory, as torch reports it), ``kernel_check`` (a kernel fails its
  float64 check), ``unsupported``, ``nan`` / ``inf`` / ``string`` (a broken result), ``bug``.
- ``slow_capacity``: the capacity objective, after sleeping ``$MPSEARCH_FAKE_SLEEP_S`` seconds, and
  appending ``pid config`` to ``$MPSEARCH_FAKE_LOG`` (``pid`` being the worker's, whose child runs
  the plug-in): the record of what each worker measured (and, before the sleep, to
  ``$MPSEARCH_FAKE_START_LOG``: what it is measuring now).
- ``hangs_on_int8_first_layer``: never returns for configurations whose first layer is int8; the
  same configurations make ``exits_on_...`` call ``sys.exit(3)``, ``interrupts_on_...`` raise
  KeyboardInterrupt and ``crashes_on_...`` die of SIGSEGV.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable

from mpsearch.backends.base import MEASURED, BackendCapabilities, LatencyBackend, LatencyResult
from mpsearch.errors import KernelCheckError, UnsupportedConfigError
from mpsearch.formats import get_format
from mpsearch.network import Network
from mpsearch.space import Config, capacity

FAULTS = ("oom", "kernel_check", "unsupported", "nan", "inf", "string", "bug")


class OutOfMemoryError(RuntimeError):
    """What ``torch.cuda.OutOfMemoryError`` is: a RuntimeError subclass with CUDA's message."""


class FakeBackend(LatencyBackend):
    """Latency = Σ k × bits / 1e5 ms (deterministic, distinct per configuration), plus faults."""

    def __init__(self, *, fault: str | None = None, when: Callable[[Config], bool] = lambda c: True,
                 sleep_s: float = 0.0, device: str = "NVIDIA H100 80GB HBM3", arch: int = 90):
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        self.fault, self.when, self.sleep_s = fault, when, sleep_s
        self.measured: list[str] = []
        self._caps = BackendCapabilities("fake", MEASURED, device, arch,
                                         frozenset({"fp16", "bf16", "fp8_e4m3", "int8", "int4"}))

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._caps

    def prepare(self, network: Network, menu: tuple[str, ...]) -> None:
        pass

    def measure(self, network: Network, config: Config) -> LatencyResult:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.measured.append(config.key)
        ms = sum(layer.k * get_format(config[layer.name]).bits for layer in network.layers) / 1e5
        if self.fault is not None and self.when(config):
            if self.fault == "oom":
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)")
            if self.fault == "kernel_check":
                raise KernelCheckError(f"kernel for layer {network.layers[0].name} ({config.formats[0]}) failed its "
                                       "check: max relative error 1.17 vs float64 (limit 0.01); it was not timed")
            if self.fault == "unsupported":
                raise UnsupportedConfigError(f"layer {network.layers[0].name}: no kernel for {config.formats[0]} here")
            if self.fault == "bug":
                raise ZeroDivisionError("division by zero")
            ms = {"nan": float("nan"), "inf": float("inf"), "string": "fast"}[self.fault]
        return LatencyResult(ms=ms, source=MEASURED, device=self._caps.device, samples=(ms,) if isinstance(ms, float) else ())


# --- plug-in objectives ---------------------------------------------------------------------------

def _append(path, line):
    # One write() of a short line on an O_APPEND file: lines of concurrent workers do not mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def slow_capacity(config, network):
    worker = os.getppid()  # a plug-in runs in a child of the worker process: log the worker
    if os.environ.get("MPSEARCH_FAKE_START_LOG"):  # "measuring now": lets a test kill mid-measurement
        _append(os.environ["MPSEARCH_FAKE_START_LOG"], f"{worker} {config.key}\n")
    time.sleep(float(os.environ.get("MPSEARCH_FAKE_SLEEP_S", "0.01")))
    if os.environ.get("MPSEARCH_FAKE_LOG"):
        _append(os.environ["MPSEARCH_FAKE_LOG"], f"{worker} {config.key}\n")
    return float(capacity(network, config))


def hangs_on_int8_first_layer(config, network):
    if config[network.layers[0].name] == "int8":
        time.sleep(3600)
    return 1.0


def returns_none(config, network):
    return None


def returns_bool(config, network):
    return True


def returns_numpy_float32(config, network):
    import numpy as np

    return np.float32(0.5)


# --- plug-ins that misbehave the ways user code does -----------------------------------------------

def exits_on_int8_first_layer(config, network):
    if config[network.layers[0].name] == "int8":
        sys.exit(3)
    return 1.0


def interrupts_on_int8_first_layer(config, network):
    if config[network.layers[0].name] == "int8":
        raise KeyboardInterrupt
    return 1.0


def crashes_on_int8_first_layer(config, network):
    if config[network.layers[0].name] == "int8":
        os.kill(os.getpid(), signal.SIGSEGV)  # what a crash in native code does
    return 1.0


def records_pid_then_hangs_on_int8_first_layer(config, network):
    """Appends its process id to ``$MPSEARCH_FAKE_PID_LOG``, then hangs like hangs_on_int8_first_layer."""
    _append(os.environ["MPSEARCH_FAKE_PID_LOG"], f"{os.getpid()}\n")
    return hangs_on_int8_first_layer(config, network)
