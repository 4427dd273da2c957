"""The Python API: search, resume, enumerate and load studies (the ``mpsearch`` command is a thin
layer over it that parses arguments and prints).

    import mpsearch

    result = mpsearch.search("mlp6", trials=40, backend="roofline", seed=0, storage="sqlite:///mlp6.db")
    result.front              # pandas DataFrame: the Pareto front, tied configurations grouped
    result.study              # the optuna.Study
    result.report("reports/mlp6")
    more = mpsearch.resume("mlp6", trials=20, storage="sqlite:///mlp6.db")
    again = mpsearch.load("mlp6", storage="sqlite:///mlp6.db")

``network`` is a :class:`~mpsearch.network.Network`, a preset name, a TOML file path, or a dict
(:meth:`Network.from_dict`). ``objectives`` is a list of built-in names (``latency``, ``capacity``,
``sqnr:WEIGHTS``), import paths (``[NAME=]package.module:function[:minimize|maximize]``, run in a
process of their own), Python callables ``f(config, network) -> float`` (run in this process; name
or direct them with :func:`mpsearch.objective`), or a dict ``{name: callable}``. A study stores no
code: resuming one whose objectives are callables or import paths needs them passed again.

Messages go to ``log`` (a callable taking one line; default: none). Errors the caller can fix raise
:class:`~mpsearch.errors.MpsearchError` subclasses with a one-line message.

Storage: a study named NAME lives, unless ``storage`` says otherwise, in ``studies/NAME.db``
(SQLite: one process) or, for a search with several workers, ``studies/NAME.log`` (a journal file:
several processes on one host); :func:`study_storage` finds whichever holds it.

Here: the functions that run studies. :mod:`mpsearch.api.setup`: where studies live and the pieces a
run is built from (network, backend, menu, objectives); :mod:`mpsearch.api.result`: what they return.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from mpsearch.errors import InvalidSpecError, MpsearchError, StudyMismatchError
from mpsearch.network import Network
from mpsearch.api.result import SearchResult
from mpsearch.api.setup import (
    Setup, build_setup, callables_hint, resume_objectives, stored_device, study_storage,
)

ENUMERATE_LIMIT = 5000
# How often `search(workers=N)` reads the study to report progress while its workers run.
PROGRESS_INTERVAL_S = 2.0

Log = Callable[[str], None]


def _silent(_line: str) -> None:
    pass


# --- running a study ------------------------------------------------------------------------------

def _budget(trials: int | None, timeout: float | None, patience: int | None = None,
            target_hv: float | None = None) -> Any:
    from mpsearch.search.run import Budget

    return Budget(trials=trials, timeout_s=timeout, patience=patience, target_hv=target_hv)


def _coordinator(heartbeat_s: float | None, stale_after_s: float | None, objective_timeout_s: float | None,
                 **kwargs: Any) -> Any:
    from mpsearch.search.workers import (
        DEFAULT_HEARTBEAT_S, DEFAULT_OBJECTIVE_TIMEOUT_S, DEFAULT_STALE_AFTER_S, Coordinator,
    )

    return Coordinator(
        heartbeat_s=DEFAULT_HEARTBEAT_S if heartbeat_s is None else heartbeat_s,
        stale_after_s=DEFAULT_STALE_AFTER_S if stale_after_s is None else stale_after_s,
        objective_timeout_s=DEFAULT_OBJECTIVE_TIMEOUT_S if objective_timeout_s is None else objective_timeout_s,
        **kwargs)


def run_guarded(url: str, search: Callable[[], Any]) -> Any:
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


def _run_here(study: Any, setup: Setup, budget: Any, storage_url: str, coordinator: Any, progress: bool) -> Any:
    from mpsearch.search.run import run_search

    try:
        return run_guarded(storage_url, lambda: run_search(
            study, setup.space, setup.objectives, budget, progress=progress,
            device=setup.backend.capabilities.device, coordinator=coordinator))
    finally:
        setup.close()


def search(network: Any, *, trials: int | None = None, timeout: float | None = None, patience: int | None = None,
           target_hv: float | None = None, formats: Any = None, objectives: Any = None, backend: str = "auto",
           device: str | None = None, data: str | None = None, cache_dir: str | None = None,
           timing: str | None = None, sampler: str | None = None, seed: int | None = None,
           constraints: Sequence[str] | None = None, storage: str | None = None, study_name: str | None = None,
           workers: int = 1, heartbeat_s: float | None = None, stale_after_s: float | None = None,
           objective_timeout_s: float | None = None, progress: bool = False, log: Log | None = None) -> SearchResult:
    """Create study ``study_name`` (default: the network's name) and search it until the budget
    (``trials`` measurements, ``timeout`` seconds, ``patience`` measurements without a change of the
    front, or layerwise's ``target_hv``) is spent.

    ``workers`` > 1 runs that many ``mpsearch worker`` processes on the study (one per GPU for a GPU
    backend) with ``trials`` as the study's total, reporting progress to ``log`` while they run;
    0 only creates the study for workers started elsewhere. Default storage: ``studies/NAME.db``,
    or ``studies/NAME.log`` with several workers."""
    from mpsearch.search.constraints import constraints_extra
    from mpsearch.search.samplers import build_sampler, default_sampler
    from mpsearch.search.storage import check_parallel, default_journal_url, default_storage_url, open_storage
    from mpsearch.search.study import create_study, new_spec, with_latency_scale
    from mpsearch.validation import check_seed, check_study_name

    log = log or _silent
    check_seed(seed)
    if not isinstance(workers, int) or workers < 0:
        raise InvalidSpecError(f"workers must be an integer >= 0, got {workers!r}")
    if workers != 1 and trials is None:
        raise InvalidSpecError(f"--workers {workers} shares the study's budget between workers: give --trials N (the total)")
    if workers != 1 and (patience is not None or target_hv is not None):
        # Each worker would judge stagnation on its own share of the trials: not the study's front.
        raise InvalidSpecError(f"--patience and --target-hv stop one search loop and cannot be shared by --workers "
                               f"{workers}: give --trials N and/or --timeout SECONDS")
    budget = _budget(trials, timeout, patience, target_hv)
    coordinator = _coordinator(heartbeat_s, stale_after_s, objective_timeout_s)  # checks the timings first
    setup = build_setup(network, backend=backend, device=device, data=data, cache_dir=cache_dir, timing=timing,
                        formats=formats, objectives=objectives)
    try:
        log(f"backend: {setup.reason}")
        if workers != 1:
            _refuse_callables_for_workers(setup.objectives, workers)
        sampler = sampler or default_sampler(len(setup.objectives))
        if target_hv is not None and sampler != "layerwise":
            raise InvalidSpecError(f"--target-hv needs a model of the front: use it with --sampler layerwise, not {sampler}")
        name = check_study_name(study_name) if study_name else check_study_name(setup.network.name, "network name")
        if storage is None and workers > 1:
            storage_url = default_journal_url(name)  # SQLite takes one process at a time; a journal several
        else:
            storage_url = storage or default_storage_url(name)
        check_parallel(storage_url, workers)
        opened = open_storage(storage_url)
        chosen, settings = build_sampler(sampler, seed=seed, space=setup.space, directions=setup.directions,
                                         exact=setup.exact_objectives())
        spec = with_latency_scale(new_spec(setup.network, setup.menu, setup.objectives, setup.backend, settings),
                                  setup.backend, setup.network)
        spec.extra.update(constraints_extra(constraints, [o.name for o in setup.objectives]))
        study = create_study(opened, storage_url, name, spec, chosen)
    except BaseException:
        setup.close()
        raise
    log(f"study {name}: {setup.network.name} ({len(setup.network.layers)} layers, {len(setup.space.decisions)} "
        f"decisions), menu {','.join(setup.menu)} ({setup.space.size:,} configurations), objectives "
        f"{', '.join(f'{o.name} ({o.direction})' for o in setup.objectives)}, sampler {sampler}")
    if workers != 1:
        return _run_local_workers(study, setup, storage_url, workers=workers, trials=trials, timeout=timeout,
                                  coordinator=coordinator, data=data, cache_dir=cache_dir, timing=timing, log=log)
    outcome = _run_here(study, setup, budget, storage_url, coordinator, progress)
    return SearchResult(study, storage_url, outcome, setup.space.size)


def _refuse_callables_for_workers(objectives: Sequence[Any], workers: int) -> None:
    from mpsearch.objectives import CallableObjective, LatencyObjective, CapacityObjective, PluginObjective
    from mpsearch.objectives.sqnr import SqnrObjective

    local = [o.name for o in objectives
             if not isinstance(o, (LatencyObjective, CapacityObjective, PluginObjective, SqnrObjective))]
    if local:
        kind = "a Python callable" if all(isinstance(o, CallableObjective) for o in objectives if o.name in local) else "a Python object"
        raise InvalidSpecError(
            f"objective {local[0]} is {kind}, which runs in this process only, but workers={workers} measures in "
            f"other processes: give it as an import path ('{local[0]}=package.module:function') or use workers=1")


def _open_stored(name: str, storage: str | None) -> tuple[str, Any, Any]:
    from mpsearch.search.storage import open_storage
    from mpsearch.search.study import load_study

    url = study_storage(name, storage)
    study, stored = load_study(open_storage(url), url, name)
    return url, study, stored


def _setup_for_stored(stored: Any, name: str, *, network: Any, formats: Any, objectives: Any, backend: str | None,
                      device: str | None, data: str | None, cache_dir: str | None, timing: str | None,
                      how_to_pass: str) -> Setup:
    """The setup that continues stored study ``name`` (stored values for all that is not given);
    not yet compared with the stored one (:func:`_check_same_setup`)."""
    backend_name = backend or stored.backend.get("backend", "auto")
    if device is None:
        device = stored_device(stored, backend_name)
    if timing is None and backend_name == stored.backend.get("backend"):
        timing = stored.backend.get("regime")  # None for backends that do not time
    specs = resume_objectives(stored, objectives, name, how_to_pass)
    net = network if network is not None else Network.from_dict(stored.network, source=f"study {name}")
    return build_setup(net, backend=backend_name, device=device, data=data, cache_dir=cache_dir, timing=timing,
                       formats=formats if formats is not None else list(stored.menu), objectives=specs)


def _check_same_setup(stored: Any, setup: Setup, name: str) -> None:
    """StudyMismatchError naming every difference between the stored study and ``setup``; then the
    backend takes the study's latency scale, so its latencies are on the stored ones' scale."""
    from mpsearch.search.study import adopt_latency_scale, check_resume, new_spec

    check_resume(stored, new_spec(setup.network, setup.menu, setup.objectives, setup.backend, stored.sampler), name)
    adopt_latency_scale(stored, setup.backend, setup.network, name)


def resume(name: str, *, storage: str | None = None, trials: int | None = None, timeout: float | None = None,
           patience: int | None = None, target_hv: float | None = None, network: Any = None, formats: Any = None,
           objectives: Any = None, backend: str | None = None, device: str | None = None, data: str | None = None,
           cache_dir: str | None = None, timing: str | None = None, heartbeat_s: float | None = None,
           stale_after_s: float | None = None, objective_timeout_s: float | None = None, progress: bool = False,
           log: Log | None = None, from_command_line: bool = False) -> SearchResult:
    """Continue study ``name`` with its stored network, menu, objectives, backend, device and
    sampler. Anything given that differs from what is stored is refused
    (:class:`~mpsearch.errors.StudyMismatchError`, each difference named). Objectives that are
    import paths or Python callables must be given again (a study stores no code).
    ``from_command_line`` words that refusal for the ``mpsearch`` command, which cannot pass functions."""
    from mpsearch.search.samplers import build_sampler
    from mpsearch.validation import offset_seed

    log = log or _silent
    budget = _budget(trials, timeout, patience, target_hv)
    coordinator = _coordinator(heartbeat_s, stale_after_s, objective_timeout_s)
    url, study, stored = _open_stored(name, storage)
    setup = _setup_for_stored(stored, name, network=network, formats=formats, objectives=objectives, backend=backend,
                              device=device, data=data, cache_dir=cache_dir, timing=timing,
                              how_to_pass=callables_hint(stored, name, from_command_line))
    try:
        _check_same_setup(stored, setup, name)
        log(f"backend: {setup.reason}")
        sampler_name = stored.sampler.get("name", "tpe")
        if target_hv is not None and sampler_name != "layerwise":
            raise InvalidSpecError(f"--target-hv needs --sampler layerwise; study {name} uses {sampler_name}")
        # A new seed per resume (the stored one offset by the trials so far): the same seed would
        # propose the configurations it proposed before.
        seed = offset_seed(stored.sampler.get("seed"), len(study.trials))
        study.sampler, _ = build_sampler(sampler_name, seed=seed, space=setup.space, directions=setup.directions,
                                         exact=setup.exact_objectives(), settings=stored.sampler)
    except BaseException:
        setup.close()
        raise
    log(f"resuming study {name}: {len(study.trials)} trials stored, sampler {sampler_name}")
    outcome = _run_here(study, setup, budget, url, coordinator, progress)
    return SearchResult(study, url, outcome, setup.space.size)


def enumerate(network: Any, *, formats: Any = None, objectives: Any = None, backend: str = "auto",
              device: str | None = None, data: str | None = None, cache_dir: str | None = None,
              timing: str | None = None, study_name: str | None = None, storage: str | None = None,
              limit: int = ENUMERATE_LIMIT, progress: bool = False, log: Log | None = None) -> SearchResult:
    """Measure every configuration of a small space (at most ``limit``) into a study marked
    exhaustive (default name ``NETWORK-MENU-exhaustive``); reports of searches of the same space
    then give their hypervolume as a percentage of its front's. ``result.outcome.measured`` below
    ``result.space_size`` means the enumeration stopped early (run it again to finish)."""
    import optuna

    from mpsearch.search.hypervolume import reference_point
    from mpsearch.search.record import SPEC_KEY
    from mpsearch.search.record import is_feasible
    from mpsearch.search.run import Budget, run_search
    from mpsearch.search.storage import default_storage_url, open_storage
    from mpsearch.search.study import create_study, new_spec, with_latency_scale

    log = log or _silent
    setup = build_setup(network, backend=backend, device=device, data=data, cache_dir=cache_dir, timing=timing,
                        formats=formats, objectives=objectives)
    try:
        log(f"backend: {setup.reason}")
        size = setup.space.size
        if size > limit:
            raise InvalidSpecError(
                f"the space has {len(setup.menu)}^{len(setup.space.decisions)} = {size:,} configurations, above "
                f"--limit {limit:,}: enumerate only small spaces (search large ones with --sampler layerwise), "
                f"or raise --limit")
        name = study_name or f"{setup.network.name}-{'-'.join(setup.menu)}-exhaustive"
        storage_url = storage or default_storage_url(name)
        # Every configuration is queued up front (Optuna's BruteForceSampler calls study.stop(),
        # which ask/tell cannot take); a resumed enumeration picks up the ones still waiting.
        spec = with_latency_scale(new_spec(setup.network, setup.menu, setup.objectives, setup.backend,
                                           {"name": "random", "seed": 0}), setup.backend, setup.network)
        spec.exhaustive = True
        study = create_study(open_storage(storage_url), storage_url, name, spec, optuna.samplers.RandomSampler(seed=0))
        for config in setup.space.all_configs():
            study.enqueue_trial(setup.space.params_from_config(config))
        log(f"enumerating {size:,} configurations of {setup.network.name} over {','.join(setup.menu)} into study {name}")
        outcome = run_search(study, setup.space, setup.objectives, Budget(trials=size), progress=progress,
                             device=setup.backend.capabilities.device)
    finally:
        setup.close()
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.values is not None and is_feasible(t)]
    if complete:
        spec.reference_point = reference_point([t.values for t in complete], setup.directions)
        study.set_user_attr(SPEC_KEY, spec.to_attr())
    return SearchResult(study, storage_url, outcome, size)


def load(name: str, storage: str | None = None) -> SearchResult:
    """Study ``name`` as stored (read-only: nothing is created or written), for its front, trials
    and report; default storage as :func:`study_storage` finds it."""
    from mpsearch.report.compute import StudyRef, open_study

    url = study_storage(name, storage)
    study, _ = open_study(StudyRef(name, url))
    return SearchResult(study, url)


# --- workers --------------------------------------------------------------------------------------

def run_worker(name: str, storage: str, *, worker_index: int = 0, trials: int | None = None,
               timeout: float | None = None, objectives: Any = None, backend: str | None = None,
               device: str | None = None, data: str | None = None, cache_dir: str | None = None,
               timing: str | None = None, heartbeat_s: float | None = None, stale_after_s: float | None = None,
               objective_timeout_s: float | None = None, progress: bool = False, log: Log | None = None,
               from_command_line: bool = False) -> tuple[SearchResult, Any]:
    """Join stored study ``name`` as worker ``worker_index`` and measure until the study's shared
    budget (or this worker's ``trials``/``timeout``) is spent. Returns the result and the
    coordinator (its ``swept`` lists the dead workers' trials this worker failed)."""
    from mpsearch.search.run import Budget, run_search
    from mpsearch.search.samplers import build_sampler
    from mpsearch.search.storage import open_storage, redacted, storage_kind
    from mpsearch.search.study import load_study
    from mpsearch.search.workers import WORKER_INDEX_ATTR, gpu_identity, read_study_budget, worker_id
    from mpsearch.validation import offset_seed

    log = log or _silent
    if storage_kind(storage) == "sqlite":
        log(f"warning: {storage} is SQLite, which takes one process at a time: do not start a second worker on it")
    study, stored = load_study(open_storage(storage), storage, name)
    study_budget = read_study_budget(study)
    if study_budget is None and trials is None and timeout is None:
        raise InvalidSpecError(
            f"study {name!r} has no shared budget (it was not started with `mpsearch search --trials N "
            f"--workers ...`): give this worker --trials N and/or --timeout SECONDS")
    coordinator = _coordinator(heartbeat_s, stale_after_s, objective_timeout_s, index=worker_index,
                               study_budget=study_budget)
    setup = _setup_for_stored(stored, name, network=None, formats=None, objectives=objectives, backend=backend,
                              device=device, data=data, cache_dir=cache_dir, timing=timing,
                              how_to_pass=callables_hint(stored, name, from_command_line))
    try:
        here = setup.backend.capabilities.device
        if here != stored.device:
            raise StudyMismatchError(
                f"worker refused: study {name!r} is measured on {stored.device}, but this worker's backend "
                f"{setup.backend.capabilities.name} gives {here} ({gpu_identity()}); start workers for this study on "
                f"{stored.device} GPUs only, or start a separate study for {here}")
        _check_same_setup(stored, setup, name)
        sampler_name = stored.sampler.get("name", "tpe")
        # Each worker its own seed, base + index (identical seeds make samplers propose identical
        # batches); a worker index started again gets a new one, so it does not replay its proposals.
        earlier = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get(WORKER_INDEX_ATTR) == worker_index)
        seed = offset_seed(stored.sampler.get("seed"), worker_index + 1000 * earlier)
        study.sampler, _ = build_sampler(sampler_name, seed=seed, space=setup.space, directions=setup.directions,
                                         exact=setup.exact_objectives(), settings=stored.sampler)
        budget = Budget(trials=trials if trials is not None else study_budget, timeout_s=timeout)
        log(f"worker {worker_index} ({worker_id()}, {gpu_identity()}) joined study {name} in {redacted(storage)}: "
            f"{len(study.trials)} trials stored, sampler {sampler_name} seed {seed}, study budget "
            f"{study_budget if study_budget is not None else 'none'}")
        outcome = run_guarded(storage, lambda: run_search(
            study, setup.space, setup.objectives, budget, progress=progress, device=here, coordinator=coordinator))
    finally:
        setup.close()
    return SearchResult(study, storage, outcome, setup.space.size), coordinator


def _run_local_workers(study: Any, setup: Setup, storage_url: str, *, workers: int, trials: int, timeout: float | None,
                       coordinator: Any, data: str | None, cache_dir: str | None, timing: str | None,
                       log: Log) -> SearchResult:
    """The study exists: start ``workers`` worker processes on it, report progress until they end."""
    from mpsearch.objectives import is_plugin_spec
    from mpsearch.search.run import SearchOutcome
    from mpsearch.search.storage import redacted
    from mpsearch.search.workers import duplicate_report, launch_workers, worker_summary, write_study_budget

    write_study_budget(study, trials)
    caps = setup.backend.capabilities
    # The parent's backend and plug-ins are only for the study's provenance: free them before the workers start.
    setup.close()
    if workers == 0:
        log(f"study {study.study_name} created with a budget of {trials} measurements; start one worker per GPU, on "
            f"any host that reaches the storage:\n  CUDA_VISIBLE_DEVICES=I mpsearch worker {study.study_name} "
            f"--storage {redacted(storage_url)} --worker-index I")
        return SearchResult(study, storage_url, None, setup.space.size)
    args = [study.study_name, "--storage", storage_url, "--no-progress",
            "--heartbeat", str(coordinator.heartbeat_s), "--stale-after", str(coordinator.stale_after_s)]
    if coordinator.objective_timeout_s is not None:
        args += ["--objective-timeout", str(coordinator.objective_timeout_s)]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    for objective in setup.objectives:  # plug-ins by the path given here: workers never take it from the study
        if is_plugin_spec(objective.spec()):
            args += ["--objective", objective.spec()]
    for flag, value in (("--data", data), ("--cache-dir", cache_dir), ("--timing", timing)):
        if value:
            args += [flag, value]
    where = "one per GPU" if caps.measures_real_hardware else f"{caps.name} backend, CPU processes"
    log(f"starting {workers} workers ({where}) on study {study.study_name}, budget {trials} measurements")
    launched = wait_with_progress(launch_workers(workers, args, pin_gpus=caps.measures_real_hardware), study,
                                  trials, log)
    summary = worker_summary(study)
    dupes = duplicate_report(study)
    log("\nper worker:")
    log(summary.to_string(index=False) if not summary.empty else "(no trials)")
    log(f"duplicate measurements: {dupes['duplicate_measurements']}; collisions prevented: "
        f"{dupes['collisions_prevented']}; dead workers' trials re-measured: {dupes['retries']}")
    failed = int(summary["failed"].sum()) if not summary.empty else 0
    outcome = SearchOutcome(measured=int(summary["measured"].sum()) + failed if not summary.empty else 0,
                            repeats=dupes["repeats_answered_from_storage"], failed=failed,
                            collisions=dupes["collisions_prevented"])
    bad = [w for w in launched if w.returncode != 0]
    outcome.stop_reason = ("all workers finished" if not bad else
                           "workers " + ", ".join(f"{w.index} (exit {w.returncode})" for w in bad) + " failed")
    return SearchResult(study, storage_url, outcome, setup.space.size)


def wait_with_progress(workers: list[Any], study: Any, budget: int | None, log: Log,
                       interval_s: float = PROGRESS_INTERVAL_S) -> list[Any]:
    """Wait for the launched workers, logging ``progress: D/BUDGET measurements (R in flight), W of N
    workers running`` whenever that changed, at most every ``interval_s``."""
    from mpsearch.search.workers.accounting import measurement_counts

    last = None
    while True:
        running = sum(1 for w in workers if w.process.poll() is None)
        try:
            done, in_flight = measurement_counts(study)
        except Exception:  # noqa: BLE001 - a read racing the workers' writes: the next one will do
            done, in_flight = (last or (0, 0, 0))[:2]
        state = (done, in_flight, running)
        if state != last:
            log(f"progress: {done}/{budget if budget is not None else '?'} measurements ({in_flight} in flight), "
                f"{running} of {len(workers)} workers running")
            last = state
        if running == 0:
            break
        time.sleep(interval_s)
    for w in workers:
        w.returncode = w.process.wait()
        if w.forwarder is not None:
            w.forwarder.join()  # the last lines a worker printed come before the summary
    return workers
