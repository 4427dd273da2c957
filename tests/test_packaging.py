"""The package as a user installs it: a wheel built from this checkout, installed with its core
dependencies into a fresh virtual environment outside the checkout, run from an empty folder.

Slow (a wheel build and a `pip install` that may download Optuna, numpy and pandas: about a minute)
but not skipped: it is the only test that sees what a wheel ships. Needs network access to PyPI
unless pip's cache holds the dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MPSEARCH_DATA", "VIRTUAL_ENV")}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _can_build_wheels_here() -> bool:
    import importlib.util

    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    return major >= 68 and bool(importlib.util.find_spec("setuptools.command.bdist_wheel") or importlib.util.find_spec("wheel"))


def _build_wheel(tmp: Path) -> Path:
    """A wheel of this checkout, built from a copy (a build writes build/ and *.egg-info next to
    the sources, which must not land in the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "mpsearch", src / "mpsearch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "wheels"
    # Build with what is installed when it can build a wheel (setuptools >= 68 with bdist_wheel, which
    # setuptools has had built in since 70.1, or from the wheel package); otherwise let pip fetch it.
    isolation = ["--no-build-isolation"] if _can_build_wheels_here() else []
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out), str(src)], cwd=tmp)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = out.glob("mpsearch-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, mpsearch, work folder): the wheel installed with its core dependencies only."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    r = _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)], cwd=tmp, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    work = tmp / "work"
    work.mkdir()
    return python, bin_dir / "mpsearch", work


def test_the_wheel_ships_the_recordings_and_needs_no_optional_package(installed):
    python, _, work = installed
    code = """
import importlib.util, json, mpsearch
from mpsearch.backends.replay import default_data_root
root = default_data_root()
print(json.dumps({"root": str(root), "package": mpsearch.__file__,
                  "files": {d: sorted(p.name for p in (root / d).iterdir()) for d in ("h100", "h200")},
                  "optional": [m for m in ("rich", "matplotlib", "plotly", "scipy", "torch")
                               if importlib.util.find_spec(m) is not None]}))
"""
    r = _run([str(python), "-c", code], cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    found = json.loads(r.stdout)
    assert Path(found["package"]).resolve().is_relative_to(python.parent.parent.resolve())  # not the checkout
    assert Path(found["root"]).resolve().is_relative_to(Path(found["package"]).resolve().parent)
    assert found["files"] == {d: ["networks.csv", "ops.csv", "provenance.json"] for d in ("h100", "h200")}
    assert found["optional"] == []  # the core dependencies pull in none of the extras


def test_a_search_from_the_installed_wheel_replays_the_packaged_recording(installed):
    _, mpsearch, work = installed
    r = _run([str(mpsearch), "search", "mlp6", "--trials", "5", "--backend", "replay", "--no-progress"], cwd=work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    backend_line = next(line for line in r.stdout.splitlines() if line.startswith("backend:"))
    # The newest shipped recording that covers mlp6 over the default menu.
    assert backend_line.startswith("backend: replay") and "NVIDIA H200" in backend_line
    assert "roofline" not in backend_line
    assert f"{os.sep}site-packages{os.sep}mpsearch{os.sep}data{os.sep}recordings{os.sep}h200" in backend_line
    assert "measured 5 configurations" in r.stdout
    assert (work / "studies" / "mlp6.db").is_file()


def test_report_after_the_first_search_writes_tables_with_the_core_dependencies(installed):
    _, mpsearch, work = installed
    if not (work / "studies" / "mlp6.db").is_file():
        r = _run([str(mpsearch), "search", "mlp6", "--trials", "5", "--backend", "replay", "--no-progress"], cwd=work)
        assert r.returncode == 0, r.stderr[-2000:]
    r = _run([str(mpsearch), "report", "mlp6"], cwd=work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = work / "reports" / "mlp6"
    assert {"front.csv", "trials.csv", "trials.json", "summary.json", "summary.txt"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"]["source"] == "replay" and summary["front_size"] >= 1
    assert "Pareto front" in r.stdout
    hints = [line for line in r.stderr.splitlines() if "plots skipped" in line]
    assert len(hints) == 1 and "pip install 'mpsearch[plot]'" in hints[0]
