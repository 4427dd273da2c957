"""Latency backends and the one place that picks one: :func:`make_backend`.

Names: ``cutlass`` (measured on this machine's GPU with tuned CUTLASS kernels), ``torch`` (measured
with the kernels PyTorch runs: cuBLAS), ``replay`` (recorded on a GPU, served from
``mpsearch/data/recordings/<recording>/``), ``roofline`` (modelled from datasheet peaks), and ``auto``, which
takes the first that can work here, in that order, and says why. The GPU backends take a timing
regime (``sustained``, ``paired`` or ``burst``; :mod:`mpsearch.backends.timing`, :mod:`mpsearch.backends.scale`).

Nothing heavy is imported here: the backend modules are imported when a backend is made, and the
GPU probe looks at device files and the driver library's name without loading CUDA.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib
from pathlib import Path
from typing import Any, Mapping

from mpsearch.backends.base import LatencyBackend
from mpsearch.errors import BackendUnavailableError, InvalidSpecError, MpsearchError
from mpsearch.formats import get_format
from mpsearch.network import Network

BACKEND_NAMES = ("auto", "cutlass", "torch", "replay", "roofline")


def backend_names() -> tuple[str, ...]:
    """The names ``make_backend`` accepts (the CLI's ``--backend`` choices)."""
    return BACKEND_NAMES


def config_formats(network: Network, config: Mapping[str, str]) -> list[str]:
    """The canonical format of each of ``network``'s layers, in layer order, from ``config``.

    Backends call this rather than trusting ``config``'s own order, so a config built for another
    network is refused with a message instead of being priced against the wrong shapes.
    """
    names = network.layer_names
    extra = [layer for layer in config if layer not in names]
    if extra or len(config) != len(names):
        raise InvalidSpecError(
            f"config {_config_text(config)} does not fit network {network.name!r}: it sets layers "
            f"{', '.join(map(str, config))} but the network has {', '.join(names)}"
        )
    return [get_format(config[layer]).name for layer in names]


def _config_text(config: Mapping[str, str]) -> str:
    return getattr(config, "key", None) or ",".join(str(config[k]) for k in config)


def probe_gpu() -> tuple[bool, str]:
    """(usable, why) from cheap signs of an NVIDIA GPU: a device node and the driver library.

    Neither CUDA nor torch is imported: this runs on every ``auto`` choice, also on CPU machines.
    """
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if not nodes:
        return False, "no GPU here (no /dev/nvidia*)"
    lib = ctypes.util.find_library("cuda")
    if not lib:
        return False, f"{nodes[0]} exists but the driver library libcuda is not found"
    return True, f"GPU found ({gpu_model() or nodes[0]}, {lib})"


def gpu_model() -> str | None:
    """The first GPU's model name from the driver's /proc entry (no CUDA needed), or None."""
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            for line in Path(info).read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            continue
    return None


def cutlass_missing() -> str | None:
    """What the CUTLASS backend lacks here, in a few words, or None if it can be tried.

    The GPU probe comes first (cheapest, and the usual answer); then the backend package's own
    ``missing_dependencies()`` (importing the package is light: CUDA and torch load on construction).
    """
    usable, why = probe_gpu()
    if not usable:
        return why
    try:
        module = importlib.import_module("mpsearch.backends.cutlass")
    except ImportError as err:
        return f"this mpsearch install has no CUTLASS backend ({err})"
    check = getattr(module, "missing_dependencies", None)
    missing = check() if callable(check) else []
    if missing:
        return f"missing {'; '.join(missing)} (pip install 'mpsearch[gpu]')"
    return None


TIMINGS = ("sustained", "paired", "burst")  # what --timing takes


def _protocol(timing: str | None) -> Any:
    """The timing protocol of ``--timing``: ``paired`` is the sustained regime, each network timed
    against the study's reference (the backend's ``against_reference``)."""
    from mpsearch.backends.timing import SUSTAINED, TimingProtocol
    from mpsearch.errors import InvalidSpecError

    if timing is not None and timing not in TIMINGS:
        raise InvalidSpecError(f"--timing must be one of {', '.join(TIMINGS)}, got {timing!r}")
    return TimingProtocol(regime=SUSTAINED if timing in (None, "paired") else timing)


def _timed(backend: Any, timing: str | None) -> Any:
    backend.against_reference = timing == "paired"
    return backend


def _make_cutlass(cache_dir: str | None, timing: str | None = None) -> tuple[LatencyBackend, str]:
    missing = cutlass_missing()
    if missing:
        raise BackendUnavailableError(
            f"the cutlass backend cannot run here: {missing}; use --backend torch, replay or roofline"
        )
    backend_class = getattr(importlib.import_module("mpsearch.backends.cutlass"), "CutlassBackend", None)
    if backend_class is None:
        raise BackendUnavailableError(
            "the cutlass backend cannot run here: mpsearch.backends.cutlass has no CutlassBackend "
            "(an incomplete install); reinstall mpsearch or use --backend replay"
        )
    backend = _timed(backend_class(cache_dir=cache_dir, protocol=_protocol(timing)), timing)
    return backend, f"cutlass: measuring on {gpu_model() or 'the local GPU'}"


def torch_missing() -> str | None:
    """What the PyTorch backend lacks here, in a few words, or None if it can be tried."""
    usable, why = probe_gpu()
    if not usable:
        return why
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch, a CUDA build)"
    return None


def _make_torch(timing: str | None = None) -> tuple[LatencyBackend, str]:
    missing = torch_missing()
    if missing:
        raise BackendUnavailableError(f"the torch backend cannot run here: {missing}; use --backend replay or roofline")
    from mpsearch.backends.pytorch import TorchBackend

    backend = _timed(TorchBackend(protocol=_protocol(timing)), timing)
    return backend, f"torch: measuring PyTorch's kernels on {gpu_model() or 'the local GPU'}"


def _make_replay(device: str | None, data: str | None, network: Network | None = None,
                 menu: tuple[str, ...] | None = None) -> tuple[LatencyBackend, str]:
    from mpsearch.backends.replay import ReplayBackend

    backend = ReplayBackend(data, device=device, network=network, menu=menu)
    rec = backend.recording
    return backend, f"replay: recording {rec.name} ({rec.device}, {rec.path})"


def _make_roofline(device: str | None) -> tuple[LatencyBackend, str]:
    from mpsearch.backends.roofline import RooflineBackend

    backend = RooflineBackend(device or "h100")
    return backend, f"roofline: modelled for {backend.capabilities.device} from datasheet peaks"


def make_backend(
    name: str,
    network: Network,
    *,
    device: str | None = None,
    data: str | None = None,
    cache_dir: str | None = None,
    timing: str | None = None,
    menu: tuple[str, ...] | None = None,
) -> tuple[LatencyBackend, str]:
    """The backend called ``name`` for ``network``, and a one-line reason for the choice.

    ``device`` picks the modelled GPU (roofline: h100, a100, h200, l40s) or the recording (replay:
    matched against each recording's directory name, device and arch); ``data`` is a recordings
    directory or one recording (default: ``$MPSEARCH_DATA``, else the newest shipped recording that
    covers the network); ``cache_dir`` is the CUTLASS compile cache; ``timing`` the GPU backends'
    regime (sustained, the default, paired or burst); ``menu`` the formats the study will use, when known
    (replay then looks for a recording that covers the network over them, not over the default menu).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in BACKEND_NAMES:
        raise InvalidSpecError(f"unknown backend {name!r}: use one of {', '.join(BACKEND_NAMES)}")
    if timing is not None:
        _protocol(timing)  # a bad regime is refused before any backend is chosen
    if key == "cutlass":
        return _make_cutlass(cache_dir, timing)
    if key == "torch":
        return _make_torch(timing)
    if key == "replay":
        return _make_replay(device, data, network, menu)
    if key == "roofline":
        return _make_roofline(device)
    return _choose_auto(network, device, data, cache_dir, timing, menu)


def _choose_auto(network: Network, device: str | None, data: str | None, cache_dir: str | None,
                 timing: str | None = None, menu: tuple[str, ...] | None = None) -> tuple[LatencyBackend, str]:
    missing = cutlass_missing()
    local = gpu_model()
    wanted_here = device is None or local is None or device.lower() in local.lower()
    if missing is None and wanted_here:
        backend, _ = _make_cutlass(cache_dir, timing)
        return backend, f"cutlass: {local or 'an NVIDIA GPU'} is here, measuring on it"
    why_not_gpu = missing if missing is not None else f"the GPU here is {local}, not {device}"
    if missing is not None and wanted_here and torch_missing() is None:
        try:
            backend, _ = _make_torch(timing)
        except BackendUnavailableError as err:  # e.g. a CPU build of torch
            why_not_gpu = f"{missing}; torch: {err}"
        else:
            return backend, (f"torch: {local or 'an NVIDIA GPU'} is here but the cutlass backend is not ({missing}); "
                             "measuring PyTorch's kernels")

    from mpsearch.backends.replay import ReplayBackend, data_root, find_recordings

    root = data_root(data)
    try:
        if not find_recordings(root):
            raise BackendUnavailableError(f"no recorded data in {root}")
        replay = ReplayBackend(data, device=device, network=network, menu=menu)
    except BackendUnavailableError as err:
        why_not_replay = str(err)
    else:
        covered, why = replay.covers(network, menu)
        if covered:
            return replay, f"replay: {why_not_gpu}; {why}"
        replay.close()
        why_not_replay = why
    try:
        backend, _ = _make_roofline(device)
    except MpsearchError as err:
        raise BackendUnavailableError(
            f"no backend can run here: cutlass: {why_not_gpu}; replay: {why_not_replay}; roofline: {err}"
        ) from None
    return backend, (
        f"roofline: {why_not_gpu}; {why_not_replay}; modelling {backend.capabilities.device} from datasheet peaks"
    )
