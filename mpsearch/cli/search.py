"""``mpsearch search``, ``resume`` and ``enumerate``: run a study, continue one, or measure a whole
small space (the ground truth a search is compared with)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mpsearch.errors import InvalidSpecError, UnsupportedConfigError

DEFAULT_OBJECTIVES = ["latency", "capacity"]
ENUMERATE_LIMIT = 5000


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, with a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = int_at_least(1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_backend_args(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    from mpsearch.backends import backend_names

    g = p.add_argument_group("latency backend")
    g.add_argument("--backend", choices=backend_names(), default=default,
                   help="where latency comes from: auto picks cutlass on a GPU, else replay when recorded data "
                        "covers the network, else roofline, and says why (default: %(default)s)")
    g.add_argument("--device", help="roofline: the GPU to model (h100, a100, h200, l40s)")
    g.add_argument("--data", help="replay: a recording folder (default: the recordings shipped in studies/data)")
    g.add_argument("--cache-dir", help="cutlass: compiled-kernel cache (default: ~/.cache/mpsearch/cutlass)")
    g.add_argument("--timing", choices=("sustained", "burst"), default=None,
                   help="cutlass/torch: the GPU's state while timing: sustained (default: run back to back until "
                        "clocks and latency are steady, as a serving GPU at its power cap) or burst (idle-cooled first)")


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget (the search stops at the first one reached)")
    g.add_argument("--trials", type=_positive_int, help="number of configurations to measure (repeats are free)")
    g.add_argument("--timeout", type=_positive_float, help="seconds")
    g.add_argument("--patience", type=_positive_int, help="stop when the Pareto front has not changed in N measurements")
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
        description="Search per-layer number formats for NETWORK (a preset or a TOML file).",
        epilog="example: mpsearch search mlp6 --trials 60 --sampler tpe --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("network", help="preset (mlp6, mlp6-decode, llama8b-block-prefill, ...) or TOML file")
    p.add_argument("--study-name", help="default: the network's name")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/NAME.db)")
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
    _add_backend_args(p)
    _add_budget_args(p)
    _add_coordination_args(p)
    p.set_defaults(func=run_search_command)

    r = sub.add_parser(
        "resume", help="continue a stored study",
        description="Continue study NAME with its stored network, menu, objectives, backend and sampler. "
                    "Anything you pass that differs from what is stored is refused, with each difference named.",
        epilog="example: mpsearch resume mlp6 --trials 20",
    )
    r.add_argument("name", help="study name")
    r.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/NAME.db)")
    r.add_argument("--network", help="must match the stored network")
    _add_space_args(r)
    _add_backend_args(r, default=None)
    _add_budget_args(r)
    _add_coordination_args(r)
    r.set_defaults(func=run_resume_command)

    e = sub.add_parser(
        "enumerate", help="measure every configuration of a small space (the exhaustive front)",
        description="Measure every configuration into a study marked exhaustive; `mpsearch report` then "
                    "compares searches of the same space with it.",
        epilog="example: mpsearch enumerate mlp6 --formats fp16,fp8,int8",
    )
    e.add_argument("network")
    e.add_argument("--study-name", help="default: NETWORK-MENU-exhaustive")
    e.add_argument("--storage", help="default: sqlite:///studies/NAME.db")
    e.add_argument("--limit", type=_positive_int, default=ENUMERATE_LIMIT,
                   help="refuse spaces with more configurations than this (default: %(default)s)")
    e.add_argument("--no-progress", action="store_true")
    _add_space_args(e)
    _add_backend_args(e)
    e.set_defaults(func=run_enumerate_command)


def _add_coordination_args(p: argparse.ArgumentParser) -> None:
    from mpsearch.cli.worker import add_coordination_args

    add_coordination_args(p)


# --- shared steps -----------------------------------------------------------------------------

class Setup:
    """Everything a study run needs, built and checked from command-line arguments."""

    def __init__(self, args: argparse.Namespace, network_spec: Any, backend_name: str,
                 formats: str | None, objective_specs: list[str], quiet: bool = False):
        from mpsearch.backends import make_backend
        from mpsearch.formats import check_menu, default_menu, parse_menu
        from mpsearch.network import Network, resolve_network
        from mpsearch.objectives import parse_objectives
        from mpsearch.space import SearchSpace

        self.network = network_spec if isinstance(network_spec, Network) else resolve_network(network_spec)
        self.backend, reason = make_backend(
            backend_name, self.network, device=getattr(args, "device", None),
            data=getattr(args, "data", None), cache_dir=getattr(args, "cache_dir", None),
            timing=getattr(args, "timing", None),
        )
        caps = self.backend.capabilities
        if not quiet:
            print(f"backend: {reason}")
        self.menu = parse_menu(formats) if formats is not None else default_menu(caps.arch)
        check_menu(self.menu, caps.arch)
        missing = [f for f in self.menu if f not in caps.formats]
        if missing:
            raise UnsupportedConfigError(
                f"backend {caps.name} ({caps.device}) cannot price {', '.join(missing)}; it has "
                f"{', '.join(sorted(caps.formats))}: narrow --formats"
            )
        self.space = SearchSpace(self.network, self.menu)
        self.objectives = parse_objectives(objective_specs, self.backend)
        for objective in self.objectives:
            objective.prepare(self.network)
        self.backend.prepare(self.network, self.menu)

    def exact_objectives(self) -> dict[int, Any]:
        from mpsearch.objectives import CapacityObjective
        from mpsearch.space import capacity

        net = self.network
        return {i: (lambda c: float(capacity(net, c))) for i, o in enumerate(self.objectives)
                if isinstance(o, CapacityObjective)}

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]


def _print_outcome(study: Any, outcome: Any, storage_url: str) -> bool:
    """Print how the search ended and the study's front; False (after a one-line error on stderr)
    when the study has no front, as when every trial failed."""
    import pandas as pd

    from mpsearch.search.results import pareto_frame

    print(f"\nstopped: {outcome.stop_reason}")
    print(f"measured {outcome.measured} configurations ({outcome.failed} failed, {outcome.infeasible} infeasible); "
          f"{outcome.repeats} repeated proposals answered from earlier measurements")
    from mpsearch.search.constraints import best_feasible_text

    best = best_feasible_text(study)  # under --constraint: the configuration the search was for
    if best:
        print(best)
    front = pareto_frame(study)
    if front.empty:
        print(no_front_message(study), file=sys.stderr)
        return False
    sources = sorted(set(front["latency_source"]) - {""})
    devices = sorted({t.user_attrs.get("latency_device", "") for t in study.best_trials} - {""})
    where = {"measured": "measured on", "replay": "replayed from a recording on", "model": "modelled for"}
    origin = " / ".join(where.get(src, src) for src in sources) or "of unknown origin"
    print(f"\nPareto front of study {study.study_name} ({len(front)} configurations; latency "
          f"{origin} {', '.join(devices)}):")
    shown = front.drop(columns=["latency_source", "config"])
    with pd.option_context("display.max_columns", 200, "display.width", 200, "display.float_format", _number):
        print(shown.to_string(index=False))
    short = "" if storage_url.startswith("sqlite:///studies/") else f" --storage {storage_url}"
    print(f"\nstored in {storage_url}; next: mpsearch report {study.study_name}{short}")
    return True


def no_front_message(study: Any) -> str:
    """One line: the study has no Pareto front, and the reason its last failed trial gave."""
    import optuna

    from mpsearch.search.record import FAIL_ATTR

    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    last = failed[-1].user_attrs.get(FAIL_ATTR, "") if failed else ""
    return (f"error: no Pareto front: none of the {len(trials)} trials of study {study.study_name} completed with a "
            f"feasible configuration" + (f" ({len(failed)} failed; last reason: {last})" if last else ""))


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def _budget(args: argparse.Namespace) -> Any:
    from mpsearch.search.run import Budget

    return Budget(trials=args.trials, timeout_s=args.timeout, patience=args.patience, target_hv=args.target_hv)


# --- commands ---------------------------------------------------------------------------------

def _run_and_report(args: argparse.Namespace, study: Any, setup: Setup, budget: Any, storage_url: str) -> int:
    """Run the search loop on ``study`` in this process, then print the outcome and the front."""
    from mpsearch.cli.worker import coordinator_from_args, run_guarded
    from mpsearch.search.run import run_search

    try:
        outcome = run_guarded(storage_url, lambda: run_search(
            study, setup.space, setup.objectives, budget, progress=not args.no_progress,
            device=setup.backend.capabilities.device, coordinator=coordinator_from_args(args)))
    finally:
        setup.backend.close()
    return 0 if _print_outcome(study, outcome, storage_url) else 1


def run_search_command(args: argparse.Namespace) -> int:
    from mpsearch.cli.worker import run_local_workers
    from mpsearch.search.constraints import constraints_extra
    from mpsearch.search.samplers import build_sampler, default_sampler
    from mpsearch.search.storage import check_parallel, default_journal_url, default_storage_url, open_storage
    from mpsearch.search.study import create_study, new_spec
    from mpsearch.validation import check_seed, check_study_name

    check_seed(args.seed)
    if args.workers < 0:
        raise InvalidSpecError(f"--workers must be an integer >= 0, got {args.workers}")
    if args.workers != 1 and args.trials is None:
        raise InvalidSpecError(f"--workers {args.workers} shares the study's budget between workers: give --trials N (the total)")
    if args.workers != 1 and (args.patience is not None or args.target_hv is not None):
        # Each worker would judge stagnation on its own share of the trials: not the study's front.
        raise InvalidSpecError(f"--patience and --target-hv stop one search loop and cannot be shared by --workers "
                               f"{args.workers}: give --trials N and/or --timeout SECONDS")
    budget = _budget(args)
    setup = Setup(args, args.network, args.backend, args.formats, args.objective or DEFAULT_OBJECTIVES)
    args.sampler = args.sampler or default_sampler(len(setup.objectives))
    if args.target_hv is not None and args.sampler != "layerwise":
        raise InvalidSpecError(f"--target-hv needs a model of the front: use it with --sampler layerwise, not {args.sampler}")
    name = check_study_name(args.study_name) if args.study_name else check_study_name(setup.network.name, "network name")
    if args.storage is None and args.workers > 1:
        # SQLite takes one process at a time; a journal file takes several on one host.
        storage_url = default_journal_url(name)
    else:
        storage_url = args.storage or default_storage_url(name)
    check_parallel(storage_url, args.workers)
    storage = open_storage(storage_url)
    sampler, settings = build_sampler(args.sampler, seed=args.seed, space=setup.space,
                                      directions=setup.directions, exact=setup.exact_objectives())
    spec = new_spec(setup.network, setup.menu, setup.objectives, setup.backend, settings)
    spec.extra.update(constraints_extra(args.constraint, [o.name for o in setup.objectives]))
    study = create_study(storage, storage_url, name, spec, sampler)
    print(f"study {name}: {setup.network.name} ({len(setup.network.layers)} layers, {len(setup.space.decisions)} decisions), "
          f"menu {','.join(setup.menu)} ({setup.space.size:,} configurations), objectives "
          f"{', '.join(f'{o.name} ({o.direction})' for o in setup.objectives)}, sampler {args.sampler}")
    if args.workers != 1:
        return run_local_workers(args, study, setup, storage_url)
    return _run_and_report(args, study, setup, budget, storage_url)


def run_resume_command(args: argparse.Namespace) -> int:
    from mpsearch.network import Network
    from mpsearch.search.samplers import build_sampler
    from mpsearch.search.storage import default_storage_url, open_storage
    from mpsearch.search.study import check_resume, load_study, new_spec, objectives_for_resume
    from mpsearch.validation import offset_seed

    budget = _budget(args)
    storage_url = args.storage or default_storage_url(args.name)
    storage = open_storage(storage_url)
    study, stored = load_study(storage, storage_url, args.name)
    network: Any = args.network or Network.from_dict(stored.network, source=f"study {args.name}")
    backend_name = args.backend or stored.backend.get("backend", "auto")
    if args.device is None and stored.backend.get("device_key"):
        args.device = stored.backend["device_key"]
    formats = args.formats if args.formats is not None else ",".join(stored.menu)
    objective_specs = objectives_for_resume(stored, args.objective, args.name)
    setup = Setup(args, network, backend_name, formats, objective_specs)
    requested = new_spec(setup.network, setup.menu, setup.objectives, setup.backend, stored.sampler)
    check_resume(stored, requested, args.name)
    sampler_name = stored.sampler.get("name", "tpe")
    if args.target_hv is not None and sampler_name != "layerwise":
        raise InvalidSpecError(f"--target-hv needs --sampler layerwise; study {args.name} uses {sampler_name}")
    base_seed = stored.sampler.get("seed")
    seed = offset_seed(base_seed, len(study.trials))
    sampler, _ = build_sampler(sampler_name, seed=seed, space=setup.space, directions=setup.directions,
                               exact=setup.exact_objectives(), settings=stored.sampler)
    study.sampler = sampler
    print(f"resuming study {args.name}: {len(study.trials)} trials stored, sampler {sampler_name}")
    return _run_and_report(args, study, setup, budget, storage_url)


def run_enumerate_command(args: argparse.Namespace) -> int:
    import optuna

    from mpsearch.search.hypervolume import reference_point
    from mpsearch.search.record import SPEC_KEY
    from mpsearch.search.run import Budget, is_feasible, run_search
    from mpsearch.search.storage import default_storage_url, open_storage
    from mpsearch.search.study import create_study, new_spec

    setup = Setup(args, args.network, args.backend, args.formats, args.objective or DEFAULT_OBJECTIVES)
    size = setup.space.size
    if size > args.limit:
        raise InvalidSpecError(
            f"the space has {len(setup.menu)}^{len(setup.space.decisions)} = {size:,} configurations, above --limit "
            f"{args.limit:,}: enumerate only small spaces (search large ones with --sampler layerwise), or raise --limit"
        )
    name = args.study_name or f"{setup.network.name}-{'-'.join(setup.menu)}-exhaustive"
    storage_url = args.storage or default_storage_url(name)
    storage = open_storage(storage_url)
    # Every configuration is queued up front (Optuna's BruteForceSampler calls study.stop(), which
    # ask/tell cannot take); a resumed enumeration picks up the ones still waiting.
    sampler = optuna.samplers.RandomSampler(seed=0)
    spec = new_spec(setup.network, setup.menu, setup.objectives, setup.backend, {"name": "random", "seed": 0})
    spec.exhaustive = True
    study = create_study(storage, storage_url, name, spec, sampler)
    for config in setup.space.all_configs():
        study.enqueue_trial(setup.space.params_from_config(config))
    print(f"enumerating {size:,} configurations of {setup.network.name} over {','.join(setup.menu)} into study {name}")
    try:
        outcome = run_search(study, setup.space, setup.objectives, Budget(trials=size),
                             progress=not args.no_progress, device=setup.backend.capabilities.device)
    finally:
        setup.backend.close()
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.values is not None and is_feasible(t)]
    if complete:
        spec.reference_point = reference_point([t.values for t in complete], setup.directions)
        study.set_user_attr(SPEC_KEY, spec.to_attr())
    has_front = _print_outcome(study, outcome, storage_url)
    if outcome.measured < size:
        print(f"warning: {size - outcome.measured} configurations were not measured ({outcome.stop_reason})", file=sys.stderr)
        return 1
    return 0 if has_front else 1
