"""Where the CUTLASS backend keeps compiled kernels and tile choices, and how tile choices are stored.

The directory is, in order: the ``cache_dir`` argument (``--cache-dir``), ``$MPSEARCH_CACHE_DIR``,
``$XDG_CACHE_HOME/mpsearch/cutlass``, ``~/.cache/mpsearch/cutlass``; never the current directory.
It holds cutlass_cppgen's kernel table ``compiled_cache.release.db`` (one row per kernel, ~0.5 MB each), ``failed.json``
(kernels nvcc rejected) and ``tuning.json`` (per device: the tile chosen for each GEMM shape and
format pair, with every candidate's timings and check error).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mpsearch.errors import BackendUnavailableError

ENV_VAR = "MPSEARCH_CACHE_DIR"
TUNING_FILE = "tuning.json"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory to use (not created here)."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "mpsearch" / "cutlass").resolve()


def ensure_cache_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe", delete=True)
        probe.close()
    except OSError as err:
        raise BackendUnavailableError(
            f"the CUTLASS kernel cache directory {path} is not writable ({err.strerror}); "
            f"pass --cache-dir DIR or set {ENV_VAR} to a writable directory"
        ) from None
    return path


class TuningStore:
    """``tuning.json``: {device: {op key: record}}, rewritten atomically after each new record."""

    def __init__(self, cache_dir: Path, device: str):
        self.path = Path(cache_dir) / TUNING_FILE
        self.device = device
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(self.device, {}).get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._data = self._read()  # another process may have added records meanwhile
        self._data.setdefault(self.device, {})[key] = record
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def records(self) -> dict[str, Any]:
        return dict(self._data.get(self.device, {}))
