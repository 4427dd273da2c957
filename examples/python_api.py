"""mpsearch from Python: a search, a resume and a report, on the CPU (the roofline latency model).

    python examples/python_api.py [FOLDER]     # studies and reports go under FOLDER (default: here)

The second objective is a Python function: the number of layers kept in fp16 (a stand-in for an
accuracy proxy). A study stores no code, so the resume passes it again by name.
"""

from __future__ import annotations

import os
import sys

import mpsearch


def fp16_layers(config, network) -> float:
    """How many layers stay in fp16 (more is safer for accuracy): maximised."""
    return float(sum(config[layer] == "fp16" for layer in network.layer_names))


def main(folder: str = ".") -> None:
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    objectives = ["latency", mpsearch.objective(fp16_layers, direction="maximize")]

    result = mpsearch.search("mlp6", trials=12, backend="roofline", device="h100", seed=0,
                             objectives=objectives, storage="sqlite:///mlp6.db")
    print(f"searched: {result.outcome.measured} configurations measured, front of {len(result.front)} points")

    result = mpsearch.resume("mlp6", trials=8, storage="sqlite:///mlp6.db", objectives=objectives)
    print(f"resumed: {len(result.study.trials)} trials stored ({result.outcome.stop_reason})")
    print(result.front[["trial", "latency", "fp16_layers", "config", "n_alternatives"]].to_string(index=False))

    folder = mpsearch.load("mlp6", storage="sqlite:///mlp6.db").report("reports/mlp6")
    print(f"report written to {folder}/")


if __name__ == "__main__":
    main(*sys.argv[1:])
