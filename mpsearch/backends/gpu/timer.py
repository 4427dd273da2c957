"""The CUDA side of the timing protocol (:mod:`mpsearch.backends.timing`): a :class:`GpuTimer` on
CUDA events, and a wait for queued GPU work that turns a hanging kernel into an error. torch is
imported when a timer is constructed or a wait begins, never at import."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

from mpsearch.errors import KernelCheckError

L2_FLUSH_BYTES = 256 << 20  # > 4x the H200's 60 MB L2
HANG_SECONDS = 60.0  # far above any kernel here (the slowest, emulated int4 on mlp6, takes ~60 ms)
_SPIN_HZ = 2.0e9  # cycles per second assumed for the spin kernel: at lower clocks it only holds longer


class CudaEventTimer:
    """:class:`~mpsearch.backends.timing.GpuTimer` on the current CUDA device (torch's default stream, which CUTLASS's
    launches also use). Imports torch when constructed."""

    def __init__(self, flush_bytes: int = L2_FLUSH_BYTES):
        import torch

        self._torch = torch
        self._flush = torch.empty(flush_bytes, dtype=torch.int8, device="cuda")
        self._enqueue_s = 100e-6  # running estimate of the host time to enqueue one sample
        self._last_ms = 1.0  # the latest batch's median sample
        # How long the host leaves the GPU between measurements (a running estimate): what a hold
        # covers. Longer holds would only delay the next measurement, which waits for queued work.
        self._gap_s = 0.1
        self._held_at: float | None = None

    def run_batch(self, launch: Callable[[], None], n: int, what: str) -> list[float]:
        self._end_hold()
        events = [self._sample(launch) for _ in range(n)]
        wait_for_gpu(what)
        out = [s.elapsed_time(e) for s, e in events]
        self._last_ms = sorted(out)[len(out) // 2]
        return out

    def run_alternating(self, launches: Sequence[Callable[[], None]], rounds: int, what: str) -> list[list[float]]:
        self._end_hold()
        events = [[self._sample(launch) for launch in launches] for _ in range(rounds)]
        wait_for_gpu(what)
        out = [[s.elapsed_time(e) for s, e in row] for row in events]
        self._last_ms = statistics.median(sum(out, [])) * len(launches)
        return out

    def _end_hold(self) -> None:
        """A measurement begins: learn how long the host left the GPU on its hold."""
        if self._held_at is not None:
            self._gap_s = 0.7 * self._gap_s + 0.3 * (time.perf_counter() - self._held_at)
            self._held_at = None

    def _sample(self, launch: Callable[[], None]) -> tuple[Any, Any]:
        """Queue one sample of ``launch``: the L2 flush, then the launch between two events."""
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        # Hold the GPU twice as long as the host took to enqueue the last sample, so that this
        # sample's launches are queued before the GPU reaches its start event.
        torch.cuda._sleep(int(min(max(2 * self._enqueue_s, 20e-6), 5e-3) * _SPIN_HZ))
        tic = time.perf_counter()
        self._flush.zero_()
        start.record()
        launch()
        end.record()
        self._enqueue_s = 0.8 * self._enqueue_s + 0.2 * (time.perf_counter() - tic)
        return start, end

    def idle(self, seconds: float) -> None:
        self._held_at = None
        wait_for_gpu("the work queued before idling")
        time.sleep(seconds)

    def hold(self, launch: Callable[[], None], seconds: float) -> None:
        span = min(seconds, 1.25 * self._gap_s)
        # The flush is part of what was measured (and of the power drawn), so it is held too.
        per_ms = self._last_ms + 0.1
        for _ in range(min(500, int(span * 1000 / per_ms))):
            self._flush.zero_()
            launch()
        self._held_at = time.perf_counter()


def wait_for_gpu(what: str, timeout_s: float = HANG_SECONDS) -> None:
    """Wait for the GPU's queued work, or raise KernelCheckError if it does not finish in time.

    torch.cuda.synchronize() would wait forever on a kernel that never finishes; polling an event
    turns that into an error naming the kernel (the process cannot use the GPU afterwards)."""
    import torch

    event = torch.cuda.Event()
    event.record()
    deadline = time.monotonic() + timeout_s
    while not event.query():
        if time.monotonic() > deadline:
            raise KernelCheckError(f"{what} did not finish within {timeout_s:.0f} s: the kernel hangs; "
                                   "this process cannot use the GPU any more")
        time.sleep(1e-4)


def gpu_pci_bus_id() -> str | None:
    """The PCI bus id of CUDA's current device (to find the same GPU in NVML), or None."""
    import torch

    try:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except (AttributeError, RuntimeError):
        return None
