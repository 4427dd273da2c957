"""Starting ``mpsearch worker`` processes on this host (``mpsearch search --workers N``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from mpsearch.errors import InvalidSpecError, UnsupportedConfigError
from mpsearch.search.workers.identity import visible_gpus


@dataclass
class LaunchedWorker:
    index: int
    gpu: str | None
    process: Any
    forwarder: Any = None
    returncode: int | None = None


def launch_workers(n: int, worker_args: Sequence[str], *, pin_gpus: bool,
                   command: Sequence[str] = (sys.executable, "-m", "mpsearch.cli", "worker")) -> list[LaunchedWorker]:
    """Start ``n`` ``mpsearch worker`` processes; with ``pin_gpus``, one per visible GPU.

    Each gets ``--worker-index i`` (its seed offset) and, when pinned, CUDA_VISIBLE_DEVICES set to
    its GPU with CUDA_DEVICE_ORDER=PCI_BUS_ID so the index means the same GPU to CUDA and the driver.
    Their output is forwarded line by line, prefixed with ``[wI]``.
    """
    if n < 1:
        raise InvalidSpecError(f"--workers must be >= 1, got {n}")
    gpus = visible_gpus() if pin_gpus else []
    if pin_gpus and len(gpus) < n:
        raise UnsupportedConfigError(
            f"--workers {n} needs {n} GPUs (one per worker) but {len(gpus)} are visible"
            f"{' (CUDA_VISIBLE_DEVICES=' + os.environ['CUDA_VISIBLE_DEVICES'] + ')' if 'CUDA_VISIBLE_DEVICES' in os.environ else ''}: "
            f"use --workers {max(1, len(gpus))}"
        )
    launched = []
    for i in range(n):
        env = dict(os.environ)
        gpu = None
        if pin_gpus:
            gpu = gpus[i]
            env["CUDA_VISIBLE_DEVICES"] = gpu
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        cmd = [*command, *worker_args, "--worker-index", str(i)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        forwarder = threading.Thread(target=_forward, args=(proc, f"[w{i}] "), daemon=True)
        forwarder.start()
        launched.append(LaunchedWorker(i, gpu, proc, forwarder))
    return launched


def _forward(proc: Any, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def wait_workers(workers: list[LaunchedWorker]) -> list[LaunchedWorker]:
    for w in workers:
        w.returncode = w.process.wait()
        if w.forwarder is not None:
            w.forwarder.join()  # the last lines a worker printed come before the summary
    return workers
