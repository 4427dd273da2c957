"""Import ``cutlass_cppgen`` (nvidia-cutlass 4.2) on cuda-python 13, with its compile cache moved.

Two problems this module solves, once per process, before anything else touches ``cutlass_cppgen``:

- cutlass_cppgen 4.2 imports the legacy module names ``cuda.cuda``, ``cuda.cudart`` and
  ``cuda.nvrtc``, which cuda-python 13 removed (they live in ``cuda.bindings.driver/runtime/nvrtc``),
  and it compares ``cuda.__version__`` (gone too) with nvcc's version. We alias the modules and set
  the version from ``cuda.bindings``.
- Its compiled-kernel cache is an SQLite file named by ``cutlass_cppgen.CACHE_FILE``, relative to the
  *current directory*, created at import time; and it writes temporary host libraries into ``./``.
  We import it from inside the cache directory, point ``CACHE_FILE`` there (absolute), and load
  host libraries from the cache directory, so nothing lands where the user happens to stand.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator

from mpsearch.errors import BackendUnavailableError

# cutlass_cppgen keys a kernel by its source, not by the compiler flags; kernels built with other
# flags (before NDEBUG, see compile.BUILD_DEFINES) live in another file so they are never reused.
CACHE_DB = "compiled_cache.release.db"

_LEGACY = {"cuda.cuda": "cuda.bindings.driver", "cuda.cudart": "cuda.bindings.runtime", "cuda.nvrtc": "cuda.bindings.nvrtc"}
_lock = threading.Lock()
_cutlass: ModuleType | None = None
_cache_dir: Path | None = None


def install_cuda_aliases() -> None:
    """Make ``import cuda.cuda`` etc. resolve to cuda-python 13's ``cuda.bindings`` modules."""
    try:
        import cuda  # a namespace package in cuda-python 13
        import cuda.bindings
    except ImportError as err:
        raise BackendUnavailableError(
            f"the CUTLASS backend needs cuda-python >= 13 (module cuda.bindings is missing: {err}); "
            "install the gpu extra: pip install 'mpsearch[gpu]'"
        ) from None
    for legacy, modern in _LEGACY.items():
        if legacy not in sys.modules:
            module = importlib.import_module(modern)
            sys.modules[legacy] = module
            setattr(cuda, legacy.split(".")[1], module)
    if not getattr(cuda, "__version__", None):
        # cutlass_cppgen requires this to be >= nvcc's version; cuda.bindings carries the real one.
        cuda.__version__ = cuda.bindings.__version__


@contextlib.contextmanager
def in_directory(path: Path) -> Iterator[None]:
    """Run a block with ``path`` as the working directory (cutlass writes to ``./`` in places)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _load_host_library(host_binary: bytes) -> ctypes.CDLL:
    """Replacement for cutlass's ``CDLLBin``: write the host stub into the cache dir, not ``./``."""
    assert _cache_dir is not None
    with tempfile.NamedTemporaryFile(prefix="host_func", suffix=".so", dir=_cache_dir, delete=True) as tmp:
        tmp.write(host_binary)
        tmp.flush()
        return ctypes.CDLL(tmp.name)


def import_cutlass(cache_dir: Path, *, device_cc: int | None = None) -> ModuleType:
    """``cutlass_cppgen``, imported once with its cache in ``cache_dir``.

    ``device_cc`` (e.g. 90) builds the option registry for that architecture without asking a GPU,
    which lets the tile catalog and the kernel sources be produced on a machine with no GPU.
    """
    global _cutlass, _cache_dir
    cache_dir = Path(cache_dir).expanduser().resolve()
    with _lock:
        if _cutlass is not None:
            if cache_dir != _cache_dir:
                raise BackendUnavailableError(
                    f"cutlass_cppgen is already using the cache {_cache_dir}; one process can use one "
                    f"cache directory, got {cache_dir} as well: use one --cache-dir per process"
                )
            if device_cc is not None:
                _set_registry(_cutlass, device_cc)
            return _cutlass
        install_cuda_aliases()
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            with in_directory(cache_dir):
                # cutlass_library skips importing its kernel generator when '-m' is anywhere in
                # sys.argv (meant for `python -m cutlass_library.generator`; `pytest -m gpu` trips it
                # too) and the option registry then fails: import it explicitly.
                import cutlass_library.generator  # noqa: F401
                import cutlass_cppgen
                import cutlass_cppgen.backend.compiler
        except ImportError as err:
            raise BackendUnavailableError(
                f"the CUTLASS backend needs nvidia-cutlass 4.2 (import cutlass_cppgen failed: {err}); "
                "install the gpu extra: pip install 'mpsearch[gpu]'"
            ) from None
        # The module, not the ArtifactManager instance that cutlass_cppgen.backend also names
        # `compiler` (an attribute lookup would find the instance).
        compiler = sys.modules["cutlass_cppgen.backend.compiler"]
        db = str(cache_dir / CACHE_DB)
        cutlass_cppgen.CACHE_FILE = db
        compiler.CACHE_FILE = db
        compiler.CDLLBin = _load_host_library
        _cache_dir = cache_dir
        _cutlass = cutlass_cppgen
        if device_cc is not None:
            _set_registry(cutlass_cppgen, device_cc)
        return cutlass_cppgen


def _set_registry(cutlass_cppgen: ModuleType, cc: int) -> None:
    if cutlass_cppgen._nvcc_version is None:
        # The kernel generator reads nvcc's version; cutlass sets it only when it creates a CUDA
        # context, which a machine without a GPU never does.
        try:
            cutlass_cppgen.check_cuda_versions()
        except Exception as err:  # cutlass raises bare Exception for a version mismatch
            raise BackendUnavailableError(f"CUTLASS cannot use this CUDA toolkit: {err}") from None
    registry = cutlass_cppgen._option_registry
    if registry is None or getattr(registry, "_mpsearch_cc", None) != cc:
        from cutlass_cppgen.library_defaults import OptionRegistry

        registry = OptionRegistry(cc)
        registry._mpsearch_cc = cc
        cutlass_cppgen._option_registry = registry
