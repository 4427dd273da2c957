"""`import mpsearch` and `mpsearch --help` must not load the GPU stack or plotting libraries:
a CPU machine, a laptop or CI should pay for none of them."""

import json
import subprocess
import sys

from tests.conftest import REPO, run_cli

HEAVY = ["torch", "cutlass_cppgen", "cutlass_library", "cuda", "cupy", "triton", "matplotlib", "plotly"]

PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))
"""


def loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_loads_no_gpu_or_plotting_module():
    assert loaded_after("import mpsearch, mpsearch.network, mpsearch.space, mpsearch.backends, mpsearch.objectives") == []


def test_building_the_cli_parser_loads_no_gpu_or_plotting_module():
    assert loaded_after("from mpsearch.cli import build_parser; build_parser()") == []


def test_help_runs_and_lists_the_commands(tmp_path):
    r = run_cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for command in ("search", "resume", "enumerate", "env"):
        assert command in r.stdout


def test_the_probe_would_notice_a_heavy_import():
    # Guards the guard: if the probe could not see a loaded module, the tests above would pass vacuously.
    assert loaded_after("import json as torch; import sys; sys.modules['torch'] = torch") == ["torch"]


def blocking(*names: str) -> str:
    """Python source that, run first, makes importing any of ``names`` (or their submodules) fail
    with ModuleNotFoundError, as when the package is not installed."""
    return f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(names)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
for _m in [m for m in sys.modules if m.split(".")[0] in {set(names)!r}]:
    del sys.modules[_m]
"""


def run_blocked(names: tuple[str, ...], code: str, cwd=REPO) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``names`` cannot be imported."""
    return subprocess.run([sys.executable, "-c", blocking(*names) + code], cwd=cwd, capture_output=True, text=True)


def test_a_blocked_module_cannot_be_imported():
    # Guards the tests that simulate a missing dependency: the block must really block.
    r = run_blocked(("json",), "import json")
    assert r.returncode != 0 and "No module named 'json'" in r.stderr
