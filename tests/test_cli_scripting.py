"""The command line in scripts: --json, exit codes, multi-worker progress, where studies are found,
ties in the printed front, and resuming with the stored device. Run in a subprocess, as a user does."""

from __future__ import annotations

import json

import optuna

from mpsearch.search.record import read_spec
from mpsearch.search.storage import open_storage

ROOF = ("--backend", "roofline", "--no-progress")
TINY = 'name = "tiny"\nbatch = 64\nsizes = [256, 128, 64]\n'
ALWAYS_FAILS = "def score(config, network):\n    raise RuntimeError('broken proxy')\n"


def test_search_json_prints_one_document_on_stdout_and_the_human_lines_on_stderr(cli):
    r = cli("search", "mlp6", "--trials", "6", "--seed", "2", "--json", *ROOF)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["study"] == "mlp6" and doc["measured"] == 6 and doc["stopped"].startswith("trial budget reached")
    assert doc["objectives"] == ["latency", "capacity"]
    assert doc["front"] and {"latency", "capacity", "config", "alternatives"} <= set(doc["front"][0])
    assert "Pareto front of study mlp6" in r.stderr and "backend: roofline" in r.stderr


def test_resume_json_reports_the_continued_study(cli):
    assert cli("search", "mlp6", "--trials", "4", *ROOF).returncode == 0
    r = cli("resume", "mlp6", "--trials", "3", "--no-progress", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["measured"] == 3 and doc["trials"] >= 7
    assert "resuming study mlp6" in r.stderr


def test_report_json_gives_the_summary_and_the_front_of_each_study(cli, tmp_path):
    assert cli("search", "mlp6", "--trials", "5", *ROOF).returncode == 0
    r = cli("report", "mlp6", "--json", "--no-files")
    assert r.returncode == 0, r.stderr
    [doc] = json.loads(r.stdout)
    assert doc["study"] == "mlp6" and 1 <= len(doc["front"]) <= doc["front_size"]
    assert doc["trials_by_state"]["COMPLETE"] >= 5
    assert not (tmp_path / "reports").exists()


def test_env_json_is_one_object_naming_the_backend_auto_would_pick(cli):
    r = cli("env", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["network"] == "mlp6" and "optuna" in doc["packages"]
    assert ("backend_auto" in doc) != ("backend_auto_error" in doc)


def test_a_search_that_ends_without_a_front_exits_nonzero_also_with_json(cli, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "proxy_fails.py").write_text(ALWAYS_FAILS)
    r = cli("search", "tiny.toml", "--trials", "3", "--json", *ROOF, "--objective", "latency",
            "--objective", "proxy_fails:score")
    assert r.returncode == 1
    assert json.loads(r.stdout)["front"] == []
    assert "error: no Pareto front: none of the 3 trials of study tiny" in r.stderr
    assert "broken proxy" in r.stderr


def test_workers_show_progress_while_they_run_and_every_command_finds_their_study(cli, tmp_path):
    # A proxy that takes 0.5 s per configuration, so the workers run for seconds, not instants.
    (tmp_path / "slow.py").write_text("import time\ndef score(config, network):\n    time.sleep(0.5)\n    return 1.0\n")
    r = cli("search", "mlp6", "--trials", "12", "--workers", "2", *ROOF, "--objective", "latency",
            "--objective", "capacity", "--objective", "slow:score")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    progress = [line.removeprefix("progress: ") for line in lines if line.startswith("progress: ")]
    counts = [(int(p.split("/")[0]), int(p.split(" of 2 workers")[0].rsplit(" ", 1)[1])) for p in progress]
    assert any(0 < done < 12 and running > 0 for done, running in counts), progress  # while they run
    # The last line, after the workers ended: the budget spent (two workers may each take the last
    # measurement at once, so one over it is possible).
    assert 12 <= counts[-1][0] <= 13 and counts[-1][1] == 0
    assert lines.index("progress: " + progress[-1]) < lines.index("per worker:")
    assert (tmp_path / "studies" / "mlp6.log").is_file() and not (tmp_path / "studies" / "mlp6.db").exists()
    # No --storage: report, resume and report --list look in studies/NAME.log too.
    listed = cli("report", "--list", "--json")
    assert [row["study"] for row in json.loads(listed.stdout)] == ["mlp6"]
    report = cli("report", "mlp6", "--json", "--no-files")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)[0]["storage"] == "journal:studies/mlp6.log"
    resumed = cli("resume", "mlp6", "--trials", "2", "--no-progress", "--objective", "score=slow:score:maximize")
    assert resumed.returncode == 0, resumed.stderr
    assert "stored in journal:studies/mlp6.log; next: mpsearch report mlp6\n" in resumed.stdout


def test_resuming_a_roofline_a100_study_keeps_the_a100(cli, tmp_path):
    assert cli("search", "mlp6", "--trials", "3", "--device", "a100", "--formats", "fp16,int8", *ROOF).returncode == 0
    r = cli("resume", "mlp6", "--trials", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "modelled for NVIDIA A100" in r.stdout
    study = optuna.load_study(study_name="mlp6", storage=open_storage(f"sqlite:///{tmp_path}/studies/mlp6.db"))
    assert read_spec(study).device == "NVIDIA A100-SXM4-80GB"
    devices = {t.user_attrs.get("latency_device") for t in study.trials if "repeat_of" not in t.user_attrs}
    assert devices == {"NVIDIA A100-SXM4-80GB"} and len(study.trials) >= 5


def test_the_printed_front_shows_tied_configurations_as_one_row_with_their_count(cli, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    r = cli("enumerate", "tiny.toml", "--formats", "fp8,int8", *ROOF)
    assert r.returncode == 0, r.stderr
    assert "(1 points, 4 configurations: a point's alternatives are configurations with the same values;" in r.stdout
    table = r.stdout.split("Pareto front of study")[1].splitlines()[1:3]
    assert table[0].split()[-1] == "alternatives" and table[1].split()[-1] == "3"


def test_the_command_line_cannot_resume_a_study_of_python_callables_and_says_so(cli, tmp_path):
    import subprocess
    import sys

    script = ("import mpsearch\n"
              "def acc(config, network):\n    return 1.0\n"
              f"mpsearch.search({{'name': 'tiny', 'batch': 64, 'sizes': [256, 128, 64]}}, trials=2, "
              "backend='roofline', objectives=['latency', acc])\n")
    made = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(__import__("tests.conftest").conftest.REPO)})
    assert made.returncode == 0, made.stderr
    r = cli("resume", "tiny", "--trials", "1", "--no-progress")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: study 'tiny' has Python-callable objective acc (maximize), which a study cannot store: the command "
        "line cannot pass Python functions: continue the study from Python, mpsearch.resume('tiny', "
        "objectives={'acc': acc_function})")



def test_search_takes_a_hugging_face_config_with_tokens_and_blocks_from_the_command_line(cli):
    from tests.conftest import REPO

    config = REPO / "tests" / "data" / "models" / "gpt2" / "config.json"
    r = cli("search", str(config), "--tokens", "64", "--blocks", "1", "--trials", "3", "--seed", "0", "--json", *ROOF)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["front"]
    assert "4 layers" in r.stderr or "(4 layers" in r.stderr, r.stderr


def test_tokens_on_a_network_that_is_not_a_config_json_is_a_one_line_error(cli):
    r = cli("search", "mlp6", "--tokens", "64", "--trials", "2", *ROOF)
    assert r.returncode != 0
    assert "tokens and blocks apply to a Hugging Face config.json" in r.stderr
    assert "Traceback" not in r.stderr
