import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `python -m mpsearch.cli ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "mpsearch.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    def _run(*args, **kwargs):
        return run_cli(*args, cwd=tmp_path, **kwargs)
    return _run


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` where there is no usable NVIDIA GPU (CI never has one)."""
    from mpsearch.backends import probe_gpu

    usable, why = probe_gpu()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
