"""``mpsearch search``, ``resume`` and ``enumerate``: run a study, continue one, or measure a whole
small space (the ground truth a search is compared with). The work is done by :mod:`mpsearch.api`;
this module parses arguments and prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mpsearch.cli.args import (
    add_backend_args, add_coordination_args, add_json_arg, add_network_arg, backend_kwargs, coordination_kwargs,
    network_from_args, positive_float, positive_int,
)
from mpsearch.cli.output import finish, human_output
from mpsearch.errors import InvalidSpecError

ENUMERATE_LIMIT = 5000


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget (the search stops at the first one reached)")
    g.add_argument("--trials", type=positive_int, help="number of configurations to measure (repeats are free)")
    g.add_argument("--timeout", type=positive_float, help="seconds")
    g.add_argument("--patience", type=positive_int, help="stop when the Pareto front has not changed in N measurements")
    g.add_argument("--target-hv", type=float, help="layerwise sampler: stop when the model is 95%% sure the front "
                                                   "holds this fraction (e.g. 0.99) of the best hypervolume")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--formats", help="format menu, e.g. fp16,fp8,int8 (default: the device's accelerated formats)")
    p.add_argument("--objective", action="append", metavar="SPEC",
                   help="repeatable: latency, capacity, sqnr:WEIGHTS.npz, or [NAME=]package.module:function[:minimize|maximize] "
                        "(default: latency and capacity)")


def register(sub: Any) -> None:
    from mpsearch.search.samplers import SAMPLERS

    p = sub.add_parser(
        "search", help="run a new multi-objective search",
        description="Search per-layer number formats for NETWORK (a preset, a TOML file, a Hugging Face config.json or "
                    "a PyTorch model built by MODULE:CALLABLE).",
        epilog="example: mpsearch search mlp6 --trials 60 --sampler tpe --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_arg(p)
    p.add_argument("--study-name", help="default: the network's name")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/NAME.db, or journal:studies/NAME.log "
                                     "with --workers N)")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="default: layerwise (tpe for a single objective, which layerwise does not take)")
    p.add_argument("--seed", type=int, help="sampler seed (reproducible proposals)")
    p.add_argument("--constraint", action="append", metavar="OBJECTIVE<=BOUND",
                   help="repeatable: a bound the chosen configuration must meet, e.g. 'latency<=3.0' or "
                        "'capacity>=600000'; the search then looks for the best configuration that meets it")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="measure with N worker processes sharing the study: one per visible GPU for the cutlass "
                        "backend, N processes for the others; --trials is then the study's total. 0 creates the "
                        "study for `mpsearch worker` processes started elsewhere (default: %(default)s)")
    _add_space_args(p)
    add_backend_args(p)
    _add_budget_args(p)
    add_coordination_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_search_command)

    r = sub.add_parser(
        "resume", help="continue a stored study",
        description="Continue study NAME with its stored network, menu, objectives, backend and sampler. "
                    "Anything you pass that differs from what is stored is refused, with each difference named.",
        epilog="example: mpsearch resume mlp6 --trials 20",
    )
    r.add_argument("name", help="study name")
    r.add_argument("--storage", help="Optuna storage URL (default: studies/NAME.db or studies/NAME.log, whichever holds it)")
    r.add_argument("--network", help="must match the stored network")
    _add_space_args(r)
    add_backend_args(r, default=None)
    _add_budget_args(r)
    add_coordination_args(r)
    add_json_arg(r)
    r.set_defaults(func=run_resume_command)

    e = sub.add_parser(
        "enumerate", help="measure every configuration of a small space (the exhaustive front)",
        description="Measure every configuration into a study marked exhaustive; `mpsearch report` then "
                    "compares searches of the same space with it.",
        epilog="example: mpsearch enumerate mlp6 --formats fp16,fp8,int8",
    )
    add_network_arg(e)
    e.add_argument("--study-name", help="default: NETWORK-MENU-exhaustive")
    e.add_argument("--storage", help="default: sqlite:///studies/NAME.db")
    e.add_argument("--limit", type=positive_int, default=ENUMERATE_LIMIT,
                   help="refuse spaces with more configurations than this (default: %(default)s)")
    e.add_argument("--no-progress", action="store_true")
    _add_space_args(e)
    add_backend_args(e)
    e.set_defaults(func=run_enumerate_command)


# --- commands ---------------------------------------------------------------------------------

def _budget_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"trials": args.trials, "timeout": args.timeout, "patience": args.patience, "target_hv": args.target_hv}


def run_search_command(args: argparse.Namespace) -> int:
    from mpsearch import api

    if args.workers < 0:
        raise InvalidSpecError(f"--workers must be an integer >= 0, got {args.workers}")
    with human_output(args.json):
        result = api.search(
            network_from_args(args), formats=args.formats, objectives=args.objective, sampler=args.sampler, seed=args.seed,
            constraints=args.constraint, storage=args.storage, study_name=args.study_name, workers=args.workers,
            progress=not args.no_progress, log=print, **_budget_kwargs(args), **backend_kwargs(args),
            **coordination_kwargs(args))
    if args.workers == 0:  # the study is created; workers started elsewhere measure it
        if args.json:
            print_created(result)
        return 0
    has_front = finish(result, args.json)
    failed_workers = args.workers > 1 and result.outcome.stop_reason != "all workers finished"
    return 0 if has_front and not failed_workers else 1


def print_created(result: Any) -> None:
    from mpsearch.cli.output import print_json
    from mpsearch.search.storage import redacted

    print_json({"study": result.name, "storage": redacted(result.storage), "created": True})


def run_resume_command(args: argparse.Namespace) -> int:
    from mpsearch import api

    with human_output(args.json):
        result = api.resume(
            args.name, storage=args.storage, network=args.network, formats=args.formats, objectives=args.objective,
            progress=not args.no_progress, log=print, from_command_line=True,
            **_budget_kwargs(args), **backend_kwargs(args), **coordination_kwargs(args))
    return 0 if finish(result, args.json) else 1


def run_enumerate_command(args: argparse.Namespace) -> int:
    from mpsearch import api

    result = api.enumerate(network_from_args(args), formats=args.formats, objectives=args.objective, study_name=args.study_name,
                           storage=args.storage, limit=args.limit, progress=not args.no_progress, log=print,
                           **backend_kwargs(args))
    has_front = finish(result, False)
    if result.outcome.measured < result.space_size:
        print(f"warning: {result.space_size - result.outcome.measured} configurations were not measured "
              f"({result.outcome.stop_reason})", file=sys.stderr)
        return 1
    return 0 if has_front else 1
