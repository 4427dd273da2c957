"""``mpsearch completion bash|zsh``: a shell completion script generated from the argparse parser.

Sub-commands, their options and option choices come from the parser itself, so the script follows
the CLI as it changes. An argument may say what its values are with a ``complete`` attribute
(``action.complete = "study"``): ``study`` (names of ``studies/*.db`` and ``*.log``), ``network`` (presets and
``*.toml`` files), ``dir``, ``file`` or ``storage`` (files), ``none`` (a free value). Without it, an
argument parsed by a type other than ``str``/``Path`` (a number) completes nothing; the rest complete
file names.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import PurePath

EPILOG = """\
examples:
  eval "$(mpsearch completion bash)"                 # in ~/.bashrc
  mpsearch completion zsh > "${fpath[1]}/_mpsearch"  # zsh: a file in $fpath (then restart zsh)
  eval "$(mpsearch completion zsh)"                  # or in ~/.zshrc, after compinit
"""


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] = field(default_factory=list)
    complete: str | None = None  # study, network, dir, file, storage, or none (a free value: a number, a name)
    repeat: bool = False
    metavar: str = ""


@dataclass
class Command:
    name: str
    help: str
    options: list[Option]
    positionals: list[Option]  # flags empty; complete/choices say what the values are
    subcommands: dict[str, "Command"] = field(default_factory=dict)


def _describe(parser: argparse.ArgumentParser, name: str, help_text: str) -> Command:
    options, positionals, subs = [], [], {}
    for action in parser._actions:  # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                subs[sub_name] = _describe(sub_parser, sub_name, helps.get(sub_name, ""))
            continue
        if action.help == argparse.SUPPRESS:
            continue
        complete = getattr(action, "complete", None)
        if complete is None and action.type not in (None, str) and not (isinstance(action.type, type) and issubclass(action.type, PurePath)):
            complete = "none"  # a number or another parsed value: file names would be wrong guesses
        entry = Option(
            flags=list(action.option_strings),
            help=(action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%"),
            takes_value=action.nargs != 0,
            choices=[str(c) for c in action.choices] if action.choices else [],
            complete=complete,
            repeat=isinstance(action, (argparse._AppendAction, argparse._CountAction)),
            metavar=str(action.metavar or action.dest),
        )
        (options if action.option_strings else positionals).append(entry)
    return Command(name, help_text, options, positionals, subs)


def describe_cli() -> Command:
    from mpsearch.cli import build_parser

    return _describe(build_parser(), "mpsearch", "")


def _presets() -> list[str]:
    from mpsearch.network import PRESETS

    return list(PRESETS)


# --- bash --------------------------------------------------------------------------------------


# What each kind of value completes to, per shell: bash fills COMPREPLY, zsh names an _arguments action.
_BASH_VALUES = {
    "study": 'COMPREPLY=( $(compgen -W "$(_mpsearch_studies)" -- "$cur") )',
    "network": 'COMPREPLY=( $(compgen -W "{presets}" -- "$cur") $(compgen -f -X "!*.toml" -- "$cur") $(compgen -d -- "$cur") )',
    "dir": 'COMPREPLY=( $(compgen -d -- "$cur") )',
    "none": "COMPREPLY=()",
    "file": 'COMPREPLY=( $(compgen -f -- "$cur") )',
}
_ZSH_ACTIONS = {"study": "_mpsearch_studies", "network": "_mpsearch_networks", "dir": "_directories", "none": " ",
                "file": "_files"}


def _kind(opt: Option) -> str:
    return opt.complete if opt.complete in _BASH_VALUES else "file"


def _bash_values(opt: Option) -> str:
    """A bash statement that fills COMPREPLY with candidate values for ``opt``."""
    if opt.choices:
        return f'COMPREPLY=( $(compgen -W "{" ".join(opt.choices)}" -- "$cur") )'
    return _BASH_VALUES[_kind(opt)].replace("{presets}", " ".join(_presets()))


def _bash_command_body(cmd: Command, indent: str) -> list[str]:
    lines = [f"{indent}case \"$prev\" in"]
    for opt in cmd.options:
        if opt.takes_value:
            lines.append(f"{indent}  {'|'.join(opt.flags)}) {_bash_values(opt)}; return ;;")
    lines.append(f"{indent}esac")
    flags = " ".join(f for opt in cmd.options for f in opt.flags)
    lines.append(f'{indent}if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "{flags}" -- "$cur") ); return; fi')
    if cmd.positionals:
        # Every positional of a sub-command takes values of one kind (argparse nargs="*" lists).
        lines.append(f"{indent}{_bash_values(cmd.positionals[0])}")
    return lines


def bash_script(cli: Command) -> str:
    sub_names = " ".join(cli.subcommands)
    out = [
        "# bash completion for mpsearch; generated by `mpsearch completion bash`, do not edit.",
        '# Load it with: eval "$(mpsearch completion bash)"',
        "_mpsearch_studies() {",
        "  local f",
        "  for f in studies/*.db studies/*.log; do [ -e \"$f\" ] && { f=${f##*/}; echo \"${f%.*}\"; }; done",
        "}",
        "_mpsearch() {",
        '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i',
        "  COMPREPLY=()",
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        "    case \"${COMP_WORDS[i]}\" in",
        f"      {'|'.join(cli.subcommands) or '__none__'}) cmd=\"${{COMP_WORDS[i]}}\"; break ;;",
        "    esac",
        "  done",
        "  case \"$cmd\" in",
        "    \"\")",
        f'      COMPREPLY=( $(compgen -W "{" ".join(f for o in cli.options for f in o.flags)} {sub_names}" -- "$cur") )',
        "      ;;",
    ]
    for name, sub in cli.subcommands.items():
        out.append(f"    {name})")
        out.extend(_bash_command_body(sub, "      "))
        out.append("      ;;")
    out += ["  esac", "}", "complete -o filenames -F _mpsearch mpsearch", ""]
    return "\n".join(out)


# --- zsh ---------------------------------------------------------------------------------------


def _zq(text: str) -> str:
    """Text safe inside a single-quoted _arguments spec: no quote, bracket or colon left raw."""
    text = " ".join(text.split())
    for raw, esc in (("\\", "\\\\"), ("[", "\\["), ("]", "\\]"), (":", "\\:")):
        text = text.replace(raw, esc)
    return text.replace("'", "'\\''")


def _zsh_action(opt: Option) -> str:
    return f"({' '.join(opt.choices)})" if opt.choices else _ZSH_ACTIONS[_kind(opt)]


def _zsh_specs(cmd: Command) -> list[str]:
    specs = []
    for opt in cmd.options:
        desc = _zq(opt.help)
        value = f":{_zq(opt.metavar)}:{_zsh_action(opt)}" if opt.takes_value else ""
        if len(opt.flags) == 1:
            # '=' accepts --opt=VALUE and --opt VALUE, as argparse does; '*' lets an option repeat
            flag = ("*" if opt.repeat else "") + opt.flags[0] + ("=" if opt.takes_value else "")
            specs.append(f"'{flag}[{desc}]{value}'")
        else:
            excl = " ".join(opt.flags)
            specs.append(f"'({excl})'{{{','.join(opt.flags)}}}'[{desc}]{value}'")
    for pos in cmd.positionals:
        specs.append(f"'*:{_zq(pos.metavar)}:{_zsh_action(pos)}'")
    return specs


def zsh_script(cli: Command) -> str:
    out = [
        "#compdef mpsearch",
        "# zsh completion for mpsearch; generated by `mpsearch completion zsh`, do not edit.",
        "_mpsearch_studies() {",
        "  local -a studies",
        "  studies=(studies/*.db(N:t:r) studies/*.log(N:t:r))",
        "  _describe -t studies 'study' studies",
        "}",
        "_mpsearch_networks() {",
        f"  local -a presets=({' '.join(_presets())})",
        "  _describe -t presets 'preset' presets",
        "  _files -g '*.toml'",
        "}",
    ]
    for name, sub in cli.subcommands.items():
        out.append(f"_mpsearch_{name}() {{")
        out.append("  _arguments -s \\")
        out.extend(f"    {s} \\" for s in _zsh_specs(sub))
        out[-1] = out[-1].removesuffix(" \\")
        out.append("}")
    commands = " ".join(f"'{_zq(n)}:{_zq(s.help)}'" for n, s in cli.subcommands.items())
    out += [
        "_mpsearch() {",
        "  local curcontext=\"$curcontext\" state line",
        "  typeset -A opt_args",
        "  _arguments -C \\",
        *(f"    {s} \\" for s in _zsh_specs(cli)),
        "    '1:command:->command' \\",
        "    '*::argument:->argument'",
        "  case $state in",
        f"    command) local -a commands=({commands}); _describe -t commands 'mpsearch command' commands ;;",
        "    argument) (( $+functions[_mpsearch_$line[1]] )) && _mpsearch_$line[1] ;;",
        "  esac",
        "}",
        "if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then",
        "  _mpsearch \"$@\"",
        "else",
        "  compdef _mpsearch mpsearch",
        "fi",
        "",
    ]
    return "\n".join(out)


SHELLS = {"bash": bash_script, "zsh": zsh_script}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL, generated from mpsearch's own argument parser.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete in")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(SHELLS[args.shell](describe_cli()))
    return 0
