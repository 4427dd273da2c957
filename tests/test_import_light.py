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
