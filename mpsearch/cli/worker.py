"""``mpsearch worker``: join a stored study and measure until its budget is spent.

Start one per GPU, on as many hosts as you like, all with the same ``--storage`` (PostgreSQL or
Redis across hosts, a journal file on one host)::

    mpsearch search mlp6 --trials 200 --storage postgresql://mpsearch@db-host/mpsearch --workers 0 ...
    CUDA_VISIBLE_DEVICES=0 mpsearch worker mlp6 --storage postgresql://mpsearch@db-host/mpsearch --worker-index 0
    CUDA_VISIBLE_DEVICES=1 mpsearch worker mlp6 --storage postgresql://mpsearch@db-host/mpsearch --worker-index 1

``mpsearch search --workers N`` does the same on one host: it creates the study, then starts N
workers (one per visible GPU for a GPU backend, N processes for the CPU backends) and waits for them.
A worker whose GPU is not the study's model is refused; see :mod:`mpsearch.search.workers` for
heartbeats, the sweep of dead workers' trials, and how two workers avoid measuring one configuration.
"""

from __future__ import annotations

import argparse
from typing import Any

from mpsearch.cli.args import (
    add_backend_args, add_coordination_args, backend_kwargs, coordination_kwargs, int_at_least, positive_float,
    positive_int,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "worker", help="join a stored study and measure until its budget is spent",
        description="Join study NAME in --storage and measure configurations until the study's budget (set by "
                    "`mpsearch search --trials`) or this worker's own --trials/--timeout is spent. Run one per "
                    "GPU (pin it with CUDA_VISIBLE_DEVICES), on one or several hosts.",
        epilog="example: CUDA_VISIBLE_DEVICES=1 mpsearch worker mlp6 --storage postgresql://user@db-host/mpsearch "
               "--worker-index 1",
    )
    p.add_argument("name", help="study name")
    p.add_argument("--storage", required=True,
                   help="the study's storage: journal:FILE (one host), postgresql://... or redis://... (several hosts)")
    p.add_argument("--worker-index", type=int_at_least(0), default=0,
                   help="this worker's number (its sampler seed is the study's seed + this; default: %(default)s)")
    p.add_argument("--trials", type=positive_int, help="at most this many measurements by this worker")
    p.add_argument("--timeout", type=positive_float, help="stop after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--objective", action="append", metavar="SPEC",
                   help="repeatable: each plug-in objective of the study, as it was given to `mpsearch search` "
                        "(a stored study never chooses the code a worker imports)")
    add_backend_args(p, default=None)
    add_coordination_args(p)
    p.set_defaults(func=run_worker_command)


def run_worker_command(args: argparse.Namespace) -> int:
    from mpsearch import api
    from mpsearch.search.storage import redacted

    result, coordinator = api.run_worker(
        args.name, args.storage, worker_index=args.worker_index, trials=args.trials, timeout=args.timeout,
        objectives=args.objective, progress=not args.no_progress, log=print, from_command_line=True,
        **backend_kwargs(args), **coordination_kwargs(args))
    outcome = result.outcome
    # No Pareto table here: N workers would print N of them; the study's front is one command away.
    print(f"worker {args.worker_index} stopped: {outcome.stop_reason}; measured {outcome.measured} "
          f"({outcome.failed} failed, {outcome.infeasible} infeasible), {outcome.repeats} repeats, "
          f"{outcome.collisions} collisions, {len(coordinator.swept)} dead workers' trials swept; "
          f"the study's front: mpsearch report {args.name} --storage {redacted(args.storage)}")
    return 0
