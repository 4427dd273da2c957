"""The names under which mpsearch stores things in an Optuna study: the one place they are spelled.

Stored studies outlive versions of mpsearch, so these strings are a file format: renaming one
breaks every study stored before. What each holds is described in :mod:`mpsearch.search.record`.
"""

# --- study user attributes ---------------------------------------------------------------------
SPEC = "mpsearch_spec"  # the StudySpec (network, menu, objectives, backend, sampler, reference point)
CREATING = "mpsearch_creating"  # written first on creation: who is creating the study, and when
BUDGET = "mpsearch_budget"  # the study's shared budget across workers, {"trials": N}
STOP = "stop_reason"  # why the last search stopped
CONSTRAINTS = "constraints"  # in StudySpec.extra: the bounds the study was searched under

# --- trial user attributes ---------------------------------------------------------------------
CONFIG = "config"  # the per-layer formats, "fp8_e4m3,int8,fp16,..." (layer order)
DEVICE = "device"  # the device the trial's latency belongs to
REPEAT = "repeat_of"  # a proposal of a configuration already measured: the trial that measured it
FAIL = "fail_reason"  # why a FAILED (or infeasible) trial failed, one line
MEASURE_S = "measure_s"  # seconds the objectives took
MEASURE_START = "measure_start"  # unix time the measurement began (after the claim held)
COLLISION = "collided_with"  # on a backed-off trial: the trial measuring the same configuration
RETRY = "retry_of"  # on a re-enqueued trial: the trial whose worker died
SWEPT = "swept_by"  # on a trial failed by the sweep: the worker that swept it
HEARTBEAT = "heartbeat"  # unix time of the last sign of life of the trial's worker
WORKER = "worker"  # host:pid of the worker that ran the trial, for people
WORKER_INDEX = "worker_index"  # the worker's index in a multi-worker run
WORKER_TOKEN = "worker_token"  # random, one per worker process: what tells workers apart
WORKER_NAMESPACE = "worker_namespace"  # boot id + PID namespace: where the worker's pid means something
WORKER_STARTED = "worker_started"  # the worker process's start time, in clock ticks after boot
GPU = "gpu"  # host, visible-device index and PCI bus of the GPU the trial ran on
# Written by LatencyResult.as_attrs (mpsearch.backends.base), read by results and reports.
LATENCY_SOURCE = "latency_source"
LATENCY_DEVICE = "latency_device"
LATENCY_DETAIL = "latency_detail"

# --- trial constraints (Optuna's: feasible when <= 0) --------------------------------------------
# Set on every finished trial; > 0 for a configuration the backend can never run, told as complete
# so that samplers learn to avoid it.
INFEASIBLE_CONSTRAINT = "unsupported"
