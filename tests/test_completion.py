"""`mpsearch completion bash|zsh`: scripts generated from the argparse parser, exercised in the shells."""

import argparse
import shutil
import subprocess

import pytest

from mpsearch.cli import completion
from mpsearch.cli.completion import _describe, bash_script, describe_cli, zsh_script


def toy_cli():
    parser = argparse.ArgumentParser(prog="mpsearch")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command")
    rep = sub.add_parser("report", help="report studies")
    rep.add_argument("names", nargs="*").complete = "study"
    rep.add_argument("--html-js", choices=("inline", "cdn"))
    rep.add_argument("--trials", type=int, help="how many [at most]: a number")
    rep.add_argument("--out").complete = "dir"
    rep.add_argument("--objective", action="append", help="it's repeatable")
    sub.add_parser("search", help="search")
    return _describe(parser, "mpsearch", "")


def complete_bash(script, words, cwd):
    """COMPREPLY for the command line ``words`` (the last one is being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    prog = f'source /dev/stdin <<\'EOS\'\n{script}\nEOS\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _mpsearch; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", prog], cwd=cwd, capture_output=True, text=True, check=True).stdout
    return sorted(w for w in out.splitlines() if w)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "studies").mkdir()
    for name in ("mlp6-h100", "digits-mlp"):
        (tmp_path / "studies" / f"{name}.db").touch()
    (tmp_path / "outdir").mkdir()
    return tmp_path


def test_bash_completes_commands_options_choices_and_study_names(project):
    script = bash_script(toy_cli())
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert complete_bash(script, ["mpsearch", "re"], project) == ["report"]
    assert complete_bash(script, ["mpsearch", "report", "--html-js", ""], project) == ["cdn", "inline"]
    assert complete_bash(script, ["mpsearch", "report", ""], project) == ["digits-mlp", "mlp6-h100"]
    assert complete_bash(script, ["mpsearch", "report", "--o"], project) == ["--objective", "--out"]
    assert complete_bash(script, ["mpsearch", "report", "--out", ""], project) == ["outdir", "studies"]
    assert complete_bash(script, ["mpsearch", "report", "--trials", ""], project) == []  # a number: no guesses


def test_the_real_parsers_commands_and_report_options_are_in_the_bash_script(project):
    script = bash_script(describe_cli())
    assert "report" in complete_bash(script, ["mpsearch", "r"], project)
    assert complete_bash(script, ["mpsearch", "report", "--html-js", ""], project) == ["cdn", "inline"]
    assert complete_bash(script, ["mpsearch", "report", "--exhaustive", "m"], project) == ["mlp6-h100"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses_and_registers_the_completion_function(tmp_path):
    script = zsh_script(toy_cli())
    path = tmp_path / "_mpsearch"
    path.write_text(script)
    subprocess.run(["zsh", "-n", str(path)], check=True)
    out = subprocess.run(["zsh", "-fc", f"autoload -U compinit; compinit -u -d {tmp_path}/dump; source {path}; "
                          "print -r -- ${_comps[mpsearch]}; functions _mpsearch_report"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "_mpsearch"
    assert "'--html-js=[]:html_js:(inline cdn)'" in out  # zsh read the spec back with its choices
    assert "'--trials=[how many \\[at most\\]\\: a number]:trials: '" in out  # a number completes nothing
    assert "'*--objective=[it'\\''s repeatable]" in script  # repeatable, quote escaped
    assert "how many \\[at most\\]\\: a number" in script  # brackets and colons escaped for _arguments


def test_completion_command_prints_the_script_for_the_shell(capsys):
    assert completion.run(argparse.Namespace(shell="bash")) == 0
    assert "complete -o filenames -F _mpsearch mpsearch" in capsys.readouterr().out
    completion.run(argparse.Namespace(shell="zsh"))
    assert capsys.readouterr().out.startswith("#compdef mpsearch")
