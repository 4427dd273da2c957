"""What a stored study, or a name, can make mpsearch do: run no code, write nowhere it should not,
be created whole or not at all, and be reported without being written to.

The CLI is driven in-process through ``mpsearch.cli.main``, exactly as the console script does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest

from mpsearch.cli import main
from mpsearch.search.record import SPEC_KEY, read_spec
from mpsearch.search.storage import open_storage
from mpsearch.search.study import CREATING_KEY
from mpsearch.search.workers.identity import WorkerIdentity, process_namespace, this_worker
from tests.conftest import REPO

ROOF = ("--backend", "roofline", "--no-progress")
TINY = 'name = "tiny"\nbatch = 64\nsizes = [256, 128, 64]\n'


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh folder to run in, holding the tiny network spec."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    return tmp_path


def run(capsys, *args):
    """(exit code, stdout, the stderr lines that are not warnings)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, [l for l in captured.err.strip().splitlines() if not l.startswith("warning:")]


def stored(name, url=None):
    return optuna.load_study(study_name=name, storage=open_storage(url or f"sqlite:///studies/{name}.db"))


# --- a stored study never chooses the code that runs -------------------------------------------------

EVIL = "import pathlib\npathlib.Path('IMPORTED').write_text('the module ran')\n\ndef score(config, network):\n    return 1.0\n"


def _study_naming_a_module(capsys, here, storage="sqlite:///studies/s.db", *extra):
    """A study whose stored spec names the plug-in evil_plugin:score, made the normal way."""
    (here / "evil_plugin.py").write_text(EVIL)
    (here / "studies").mkdir(exist_ok=True)
    code, _, err = run(capsys, "search", "tiny.toml", "--study-name", "s", "--storage", storage, "--trials", "2",
                       *ROOF, "--objective", "latency", "--objective", "evil_plugin:score", *extra)
    assert code == 0, err
    (here / "IMPORTED").unlink()  # it ran because the user named it; from here on, nobody does
    sys.modules.pop("evil_plugin", None)


def test_resuming_a_study_that_names_a_module_imports_nothing_and_asks_for_it_by_name(capsys, here):
    _study_naming_a_module(capsys, here)
    code, _, err = run(capsys, "resume", "s", "--storage", "sqlite:///studies/s.db", "--trials", "1", "--no-progress")
    assert code == 2 and err == [
        "error: study 's' uses plug-in objective score=evil_plugin:score:maximize; mpsearch never imports code a "
        "stored study names: name it again with --objective score=evil_plugin:score:maximize"]
    assert not (here / "IMPORTED").exists()


def test_a_worker_on_a_study_that_names_a_module_imports_nothing(capsys, here):
    _study_naming_a_module(capsys, here, "journal:studies/s.log", "--workers", "0")
    code, _, err = run(capsys, "worker", "s", "--storage", "journal:studies/s.log", "--no-progress")
    assert code == 2 and len(err) == 1 and "mpsearch never imports code a stored study names" in err[0]
    assert not (here / "IMPORTED").exists()


def test_a_plugin_named_again_on_the_command_line_resumes_the_study(capsys, here):
    _study_naming_a_module(capsys, here)
    code, _, err = run(capsys, "resume", "s", "--storage", "sqlite:///studies/s.db", "--trials", "1", "--no-progress",
                       "--objective", "evil_plugin:score")
    assert code == 0, err
    assert (here / "IMPORTED").exists()  # imported because the user named it, in the plug-in's own process
    assert len(stored("s", "sqlite:///studies/s.db").trials) >= 3


def test_another_plugin_named_on_resume_is_refused_naming_the_difference(capsys, here):
    _study_naming_a_module(capsys, here)
    code, _, err = run(capsys, "resume", "s", "--storage", "sqlite:///studies/s.db", "--trials", "1", "--no-progress",
                       "--objective", "tests.plugins:constant_one")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: study 's' uses plug-in objective score=evil_plugin:score:maximize")
    assert not (here / "IMPORTED").exists()


def test_a_report_of_a_study_that_names_a_module_imports_nothing(capsys, here):
    _study_naming_a_module(capsys, here)
    code, _, err = run(capsys, "report", "s", "--storage", "sqlite:///studies/s.db", "--no-files")
    assert code == 0, err
    assert not (here / "IMPORTED").exists()


# --- study names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("../../x", "it holds '/'"),
    ("/tmp/x", "it holds '/'"),
    ("a/b", "it holds '/'"),
    ("a@b", "it holds '@'"),
    ("..", "it holds '..'"),
    ("a\\b", "it holds '\\\\'"),
])
def test_a_study_name_that_could_leave_studies_or_reports_is_refused_and_nothing_is_written(capsys, here, name, why):
    before = set(os.listdir(here.parent))
    code, _, err = run(capsys, "search", "tiny.toml", "--study-name", name, "--trials", "1", *ROOF)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: study name {name!r} cannot name a study: {why}; a study's name is a file name "
                             "in studies/ and reports/ (no path separators, '..' or '@')")
    assert set(os.listdir(here.parent)) == before and not (here / "studies").exists()


def test_a_network_name_that_cannot_name_a_study_asks_for_a_study_name(capsys, here):
    (here / "bad.toml").write_text('name = "../up"\nbatch = 64\nsizes = [256, 128]\n')
    code, _, err = run(capsys, "search", "bad.toml", "--trials", "1", *ROOF)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: network name '../up' cannot name a study: it holds '/'")
    assert err[0].endswith(", or give --study-name NAME")


@pytest.mark.parametrize("command", [("resume", "../x", "--trials", "1"), ("report", "../x"), ("report", "a/b@sqlite:///s.db")])
def test_resume_and_report_refuse_a_name_that_could_leave_their_folders(capsys, here, command):
    code, _, err = run(capsys, *command)
    assert code == 2 and len(err) == 1 and "cannot name a study" in err[0]


# --- creation is all or nothing -----------------------------------------------------------------------

def _half_created(url, name, creator=None):
    """What a `search` killed between creating the study and storing its spec leaves."""
    study = optuna.create_study(storage=open_storage(url), study_name=name, directions=["minimize", "maximize"])
    if creator is not None:
        study.set_user_attr(CREATING_KEY, {**creator.attrs(), "time": time.time()})
    return study


def _dead_creator():
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return WorkerIdentity("host", int(gone.stdout), "dead-token", process_namespace(), 1)


@pytest.mark.parametrize("creator", ["dead process", "no creator recorded"])
def test_a_half_created_study_is_replaced_by_the_next_search(capsys, here, creator):
    (here / "studies").mkdir()
    _half_created("sqlite:///studies/tiny.db", "tiny", _dead_creator() if creator == "dead process" else None)
    code, out, err = run(capsys, "search", "tiny.toml", "--trials", "2", *ROOF)
    assert code == 0, err
    study = stored("tiny")
    assert read_spec(study) is not None and len(study.trials) >= 2


def test_resuming_a_half_created_study_says_what_happened_and_how_to_recover(capsys, here):
    (here / "studies").mkdir()
    dead = _dead_creator()
    _half_created("sqlite:///studies/tiny.db", "tiny", dead)
    code, _, err = run(capsys, "resume", "tiny", "--trials", "1", "--no-progress")
    assert code == 2 and err == [
        f"error: study 'tiny' in sqlite:///studies/tiny.db was never completed (its creation by {dead.label} stopped "
        "before its spec was stored; it holds no trial): start it again with `mpsearch search ... --study-name tiny`, "
        "which replaces it"]


def test_a_study_being_created_by_a_live_process_is_not_replaced(capsys, here):
    (here / "studies").mkdir()
    _half_created("sqlite:///studies/tiny.db", "tiny", this_worker())  # alive: this very process
    code, _, err = run(capsys, "search", "tiny.toml", "--trials", "1", *ROOF)
    assert code == 2 and err == [
        f"error: study 'tiny' in sqlite:///studies/tiny.db is being created right now by {this_worker().label}; "
        "continue it with `mpsearch resume tiny` once that is done, or pick another --study-name"]
    assert read_spec(stored("tiny")) is None


def test_a_half_created_study_that_holds_trials_is_never_deleted(capsys, here):
    (here / "studies").mkdir()
    study = _half_created("sqlite:///studies/tiny.db", "tiny", _dead_creator())
    study.tell(study.ask(), [1.0, 2.0])
    code, _, err = run(capsys, "search", "tiny.toml", "--trials", "1", *ROOF)
    assert code == 2 and len(err) == 1 and "was not created by mpsearch" in err[0]
    assert len(stored("tiny").trials) == 1


@pytest.mark.distributed
@pytest.mark.slow
def test_five_searches_creating_one_name_at_once_on_postgresql_end_in_one_study_and_one_line_each(tmp_path):
    import uuid

    from tests.test_distributed import PG, require_server

    require_server(5432, "PostgreSQL")
    name = f"mpsearch-race-{uuid.uuid4().hex[:10]}"
    (tmp_path / "tiny.toml").write_text(TINY)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "mpsearch.cli", "search", "tiny.toml", "--study-name", name,
                               "--storage", PG, "--trials", "2", *ROOF], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(5)]
    try:
        results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
        assert sorted(code for code, _ in results) == [0, 2, 2, 2, 2], results
        for code, err in results:
            lines = [l for l in err.strip().splitlines() if not l.startswith("warning:")]
            assert "Traceback" not in err
            if code:
                assert len(lines) == 1 and (" already exists in " in lines[0] or " is being created right now by " in lines[0])
        assert read_spec(optuna.load_study(study_name=name, storage=open_storage(PG))) is not None
    finally:
        try:
            optuna.delete_study(study_name=name, storage=open_storage(PG))
        except KeyError:
            pass


# --- reports read ------------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["sqlite:///studies/tiny.db", "journal:studies/tiny.log"])
def test_a_report_writes_nothing_into_the_study(capsys, here, storage):
    (here / "studies").mkdir()
    code, _, err = run(capsys, "search", "tiny.toml", "--trials", "3", "--storage", storage, *ROOF)
    assert code == 0, err
    study_file = here / "studies" / ("tiny.db" if storage.startswith("sqlite") else "tiny.log")
    before, files = study_file.read_bytes(), sorted(os.listdir(here / "studies"))
    code, _, err = run(capsys, "report", "tiny", "--storage", storage, "--html-js", "cdn")
    assert code == 0, err
    assert study_file.read_bytes() == before and sorted(os.listdir(here / "studies")) == files  # not even a lock


def test_a_study_with_no_stored_reference_point_is_reported_without_writing_one(capsys, here):
    code, _, err = run(capsys, "search", "tiny.toml", "--trials", "3", *ROOF)
    assert code == 0, err
    study = stored("tiny")
    spec = read_spec(study)
    spec.reference_point = None  # as a study made before searches stored it
    study.set_user_attr(SPEC_KEY, spec.to_attr())
    code, out, err = run(capsys, "report", "tiny", "--no-files")
    assert code == 0, err
    assert "derived" in out and read_spec(stored("tiny")).reference_point is None


def test_a_storage_opened_read_only_refuses_every_write(here):
    (here / "studies").mkdir()
    assert main(["search", "tiny.toml", "--trials", "1", "--storage", "journal:studies/tiny.log", *ROOF]) == 0
    assert main(["search", "tiny.toml", "--study-name", "t2", "--trials", "1", *ROOF]) == 0
    for url, name in (("journal:studies/tiny.log", "tiny"), ("sqlite:///studies/t2.db", "t2")):
        study = optuna.load_study(study_name=name, storage=open_storage(url, read_only=True))
        with pytest.raises(Exception) as err:
            study.set_user_attr("x", 1)
        assert "read-only" in str(err.value) or "readonly" in str(err.value.__cause__ or err.value)
