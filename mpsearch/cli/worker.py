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

from mpsearch.errors import InvalidSpecError, MpsearchError, StudyMismatchError


def add_coordination_args(p: argparse.ArgumentParser) -> None:
    """Heartbeat, sweep and plug-in timeout options (search, resume and worker share them)."""
    from mpsearch.cli.search import _positive_float
    from mpsearch.search.workers import DEFAULT_HEARTBEAT_S, DEFAULT_OBJECTIVE_TIMEOUT_S, DEFAULT_STALE_AFTER_S

    g = p.add_argument_group("workers and faults")
    g.add_argument("--heartbeat", type=_positive_float, default=DEFAULT_HEARTBEAT_S, metavar="S",
                   help="seconds between heartbeats of a running trial (default: %(default)g)")
    g.add_argument("--stale-after", type=_positive_float, default=DEFAULT_STALE_AFTER_S, metavar="S",
                   help="a running trial with no heartbeat for this long belongs to a dead worker: it is failed "
                        "and its configuration measured again (default: %(default)g)")
    g.add_argument("--objective-timeout", type=_positive_float, default=DEFAULT_OBJECTIVE_TIMEOUT_S, metavar="S",
                   help="a plug-in objective running longer fails its trial (default: %(default)g)")


def coordinator_from_args(args: argparse.Namespace, *, index: int | None = None, study_budget: int | None = None) -> Any:
    from mpsearch.search.workers import Coordinator

    return Coordinator(heartbeat_s=args.heartbeat, stale_after_s=args.stale_after,
                       objective_timeout_s=args.objective_timeout, index=index, study_budget=study_budget)


def register(sub: Any) -> None:
    from mpsearch.cli.search import _add_backend_args, _positive_float, _positive_int, int_at_least

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
    p.add_argument("--trials", type=_positive_int, help="at most this many measurements by this worker")
    p.add_argument("--timeout", type=_positive_float, help="stop after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--objective", action="append", metavar="SPEC",
                   help="repeatable: each plug-in objective of the study, as it was given to `mpsearch search` "
                        "(a stored study never chooses the code a worker imports)")
    _add_backend_args(p, default=None)
    add_coordination_args(p)
    p.set_defaults(func=run_worker_command)


def run_worker_command(args: argparse.Namespace) -> int:
    from mpsearch.cli.search import Setup
    from mpsearch.network import Network
    from mpsearch.search.run import Budget, run_search
    from mpsearch.search.samplers import build_sampler
    from mpsearch.search.storage import open_storage, redacted, storage_kind
    from mpsearch.search.study import check_resume, load_study, new_spec, objectives_for_resume
    from mpsearch.search.workers import WORKER_INDEX_ATTR, gpu_identity, read_study_budget, worker_id
    from mpsearch.validation import offset_seed

    url = args.storage
    if storage_kind(url) == "sqlite":
        print(f"warning: {url} is SQLite, which takes one process at a time: do not start a second worker on it")
    storage = open_storage(url)
    study, stored = load_study(storage, url, args.name)
    study_budget = read_study_budget(study)
    if study_budget is None and args.trials is None and args.timeout is None:
        raise InvalidSpecError(
            f"study {args.name!r} has no shared budget (it was not started with `mpsearch search --trials N "
            f"--workers ...`): give this worker --trials N and/or --timeout SECONDS"
        )
    backend_name = args.backend or stored.backend.get("backend", "auto")
    if args.device is None and stored.backend.get("device_key"):
        args.device = stored.backend["device_key"]
    objective_specs = objectives_for_resume(stored, args.objective, args.name)
    network = Network.from_dict(stored.network, source=f"study {args.name}")
    setup = Setup(args, network, backend_name, ",".join(stored.menu), objective_specs)
    try:
        here = setup.backend.capabilities.device
        if here != stored.device:
            raise StudyMismatchError(
                f"worker refused: study {args.name!r} is measured on {stored.device}, but this worker's backend "
                f"{setup.backend.capabilities.name} gives {here} ({gpu_identity()}); start workers for this study on "
                f"{stored.device} GPUs only, or start a separate study for {here}"
            )
        requested = new_spec(setup.network, setup.menu, setup.objectives, setup.backend, stored.sampler)
        check_resume(stored, requested, args.name)
        sampler_name = stored.sampler.get("name", "tpe")
        base_seed = stored.sampler.get("seed")
        # Each worker its own seed, base + index (identical seeds make samplers propose identical
        # batches); a worker index started again gets a new one, so it does not replay its proposals.
        earlier = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get(WORKER_INDEX_ATTR) == args.worker_index)
        seed = offset_seed(base_seed, args.worker_index + 1000 * earlier)
        sampler, _ = build_sampler(sampler_name, seed=seed, space=setup.space, directions=setup.directions,
                                   exact=setup.exact_objectives(), settings=stored.sampler)
        study.sampler = sampler
        coordinator = coordinator_from_args(args, index=args.worker_index, study_budget=study_budget)
        own = args.trials if args.trials is not None else study_budget
        budget = Budget(trials=own, timeout_s=args.timeout)
        print(f"worker {args.worker_index} ({worker_id()}, {gpu_identity()}) joined study {args.name} in "
              f"{redacted(url)}: {len(study.trials)} trials stored, sampler {sampler_name} seed {seed}, "
              f"study budget {study_budget if study_budget is not None else 'none'}")
        outcome = run_guarded(url, lambda: run_search(
            study, setup.space, setup.objectives, budget, progress=not args.no_progress,
            device=here, coordinator=coordinator))
    finally:
        setup.backend.close()
    # No Pareto table here: N workers would print N of them; the study's front is one command away.
    print(f"worker {args.worker_index} stopped: {outcome.stop_reason}; measured {outcome.measured} "
          f"({outcome.failed} failed, {outcome.infeasible} infeasible), {outcome.repeats} repeats, "
          f"{outcome.collisions} collisions, {len(coordinator.swept)} dead workers' trials swept; "
          f"the study's front: mpsearch report {args.name} --storage {redacted(url)}")
    return 0


def run_guarded(url: str, search: Any) -> Any:
    """Run ``search()``; a storage failure mid-search becomes one StorageError line."""
    from mpsearch.search.workers import storage_errors_to_one_line

    try:
        return search()
    except MpsearchError:
        raise
    except Exception as err:
        converted = storage_errors_to_one_line(url, err)
        if converted is None:
            raise
        raise converted from None


def run_local_workers(args: argparse.Namespace, study: Any, setup: Any, storage_url: str) -> int:
    """``mpsearch search --workers N``: the study exists; start N workers on it and wait for them."""
    from mpsearch.cli.search import _print_outcome
    from mpsearch.objectives import is_plugin_spec
    from mpsearch.search.run import SearchOutcome
    from mpsearch.search.workers import (
        duplicate_report, launch_workers, wait_workers, worker_summary, write_study_budget,
    )

    from mpsearch.search.storage import redacted

    write_study_budget(study, args.trials)
    caps = setup.backend.capabilities
    pin = caps.measures_real_hardware
    # The parent's backend and plug-ins are only for the study's provenance: free them before the workers start.
    setup.backend.close()
    for objective in setup.objectives:
        objective.close()
    if args.workers == 0:
        print(f"study {study.study_name} created with a budget of {args.trials} measurements; start one worker "
              f"per GPU, on any host that reaches the storage:\n  CUDA_VISIBLE_DEVICES=I mpsearch worker "
              f"{study.study_name} --storage {redacted(storage_url)} --worker-index I")
        return 0
    worker_args = [study.study_name, "--storage", storage_url, "--no-progress",
                   "--heartbeat", str(args.heartbeat), "--stale-after", str(args.stale_after),
                   "--objective-timeout", str(args.objective_timeout)]
    if args.timeout is not None:
        worker_args += ["--timeout", str(args.timeout)]
    for objective in setup.objectives:  # plug-ins by the path given here: workers never take it from the study
        if is_plugin_spec(objective.spec()):
            worker_args += ["--objective", objective.spec()]
    for flag in ("data", "cache_dir"):
        if getattr(args, flag, None):
            worker_args += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    where = "one per GPU" if pin else f"{caps.name} backend, CPU processes"
    print(f"starting {args.workers} workers ({where}) on study {study.study_name}, budget {args.trials} measurements")
    workers = wait_workers(launch_workers(args.workers, worker_args, pin_gpus=pin))
    summary = worker_summary(study)
    report = duplicate_report(study)
    print("\nper worker:")
    print(summary.to_string(index=False) if not summary.empty else "(no trials)")
    print(f"duplicate measurements: {report['duplicate_measurements']}; collisions prevented: "
          f"{report['collisions_prevented']}; dead workers' trials re-measured: {report['retries']}")
    outcome = SearchOutcome(measured=int(summary["measured"].sum() + summary["failed"].sum()) if not summary.empty else 0,
                            repeats=report["repeats_answered_from_storage"],
                            failed=int(summary["failed"].sum()) if not summary.empty else 0,
                            collisions=report["collisions_prevented"])
    bad = [w for w in workers if w.returncode != 0]
    outcome.stop_reason = ("all workers finished" if not bad else
                           "workers " + ", ".join(f"{w.index} (exit {w.returncode})" for w in bad) + " failed")
    has_front = _print_outcome(study, outcome, storage_url)
    return 0 if not bad and has_front else 1
