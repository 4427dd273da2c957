"""What running a plug-in objective in its own process costs per trial.

A plug-in runs in a child process (``mpsearch.objectives.plugin``), started once and reused. This
measures, for a plug-in that returns at once (``tests.plugins:constant_one``) on ``mlp6``:

- ``in_process_us``: calling the function directly (what a plug-in cost before it had a process);
- ``call_us``: one call through the child (send the configuration, wait, receive the value);
- ``start_ms``: starting a child and importing the plug-in there: what a process started per trial
  (or after each crash or timeout) would add to every call.

Writes benchmarks/results/plugin_call_cost.{json,md}::

    PYTHONPATH=. python benchmarks/plugins/call_cost.py [--calls 2000] [--starts 20] [--machine "..."]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from mpsearch.network import preset
from mpsearch.objectives import load_callable
from mpsearch.objectives.plugin import PluginProcess
from mpsearch.space import SearchSpace

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
TARGET = "tests.plugins:constant_one"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--machine", default=f"{platform.node()} ({platform.processor() or platform.machine()})")
    args = ap.parse_args()

    network = preset("mlp6")
    config = SearchSpace(network, ("fp16", "fp8", "int8")).parse_config("fp16,fp8,int8,fp16,fp8,int8")
    func = load_callable(TARGET)
    t0 = time.perf_counter()
    for _ in range(args.calls):
        func(config, network)
    in_process_us = (time.perf_counter() - t0) / args.calls * 1e6

    starts = []
    for _ in range(args.starts):
        child = PluginProcess("one", TARGET, network)
        t0 = time.perf_counter()
        child.start(60)
        starts.append((time.perf_counter() - t0) * 1e3)
        child.close()

    child = PluginProcess("one", TARGET, network)
    child.start(60)
    calls = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        child.call(config.formats, 60, config.key)
        calls.append((time.perf_counter() - t0) * 1e6)
    child.close()

    result = {
        "machine": args.machine, "python": platform.python_version(), "plugin": TARGET, "network": "mlp6",
        "calls": args.calls, "starts": args.starts,
        "in_process_us": round(in_process_us, 2),
        "call_us": {"median": round(statistics.median(calls), 1), "p90": round(statistics.quantiles(calls, n=10)[-1], 1)},
        "start_ms": {"median": round(statistics.median(starts), 1), "max": round(max(starts), 1)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "plugin_call_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "plugin_call_cost.md").write_text(
        f"# Cost of running a plug-in objective in its own process\n\n"
        f"Measured on {args.machine}, Python {result['python']}, with `benchmarks/plugins/call_cost.py` "
        f"({TARGET}, a function that returns at once, on mlp6).\n\n"
        f"| what | per trial |\n| --- | --- |\n"
        f"| calling the function in the search's process | {result['in_process_us']} µs |\n"
        f"| one call through its persistent child process | {result['call_us']['median']} µs median, "
        f"{result['call_us']['p90']} µs p90 ({args.calls} calls) |\n"
        f"| starting a child and importing the plug-in (paid once, and after a crash or timeout) | "
        f"{result['start_ms']['median']} ms median, {result['start_ms']['max']} ms max ({args.starts} starts) |\n\n"
        f"A child started per trial would add the start to every measurement; the persistent child adds "
        f"one call's round trip.\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
