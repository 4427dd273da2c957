"""The ``mpsearch`` command line. Each sub-command lives in its own module with
``register(subparsers)``, which adds its parser and sets ``func`` to a ``run(args) -> int``.

Errors the user can fix (:class:`~mpsearch.errors.MpsearchError`) print as one line on stderr and
exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from mpsearch import __version__
from mpsearch.errors import MpsearchError
from mpsearch.search.interrupts import recorded_interrupts

# Sub-command modules, imported when the parser is built; each must import nothing heavy at module
# level (no optuna samplers' torch, no CUDA, no matplotlib) so that `mpsearch --help` stays light.
COMMAND_MODULES = ("search", "report", "bench", "worker", "env", "completion")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpsearch",
        description="Find the latency-vs-quality Pareto front of per-layer number formats on a GPU.",
        epilog="example: mpsearch search mlp6 --trials 60   (then: mpsearch report mlp6)",
    )
    parser.add_argument("--version", action="version", version=f"mpsearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mpsearch.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"mpsearch.cli.{name}":
                continue  # sub-command not built yet
            raise
        module.register(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
    print(f"warning: {message}", file=sys.stderr)


def _quiet_optuna() -> None:
    """mpsearch prints its own progress; Optuna's per-trial INFO lines would drown it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    _quiet_optuna()
    try:
        # Also a Ctrl-C that a library swallowed in a finalizer stops the command (mpsearch.search.interrupts).
        with recorded_interrupts():
            return int(args.func(args) or 0)
    except MpsearchError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: every finished trial is stored; resume with `mpsearch resume NAME`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
