"""Ctrl-C at random moments: does a worker always stop, and stop as interrupted?

Each run forks one worker as ``mpsearch worker`` runs it (the search loop under the CLI's interrupt
handling, a fast fake backend; the fault-injection tests' harness), on a fresh study, sends it
SIGINT after a random 0.3-2 s, and waits up to 60 s. The outcome is ``interrupted`` (what a user is
promised), ``crashed`` (the last line of the traceback) or ``still running`` (the Ctrl-C was lost;
the worker is then killed). Rare outcomes: on PostgreSQL the interrupt sometimes lands in a finalizer
that the connection pool runs during garbage collection, where Python prints it to stderr
("Exception ignored in") and drops it, so run enough of them, and keep stderr to count those.

    python benchmarks/faults/sigint_stress.py --storage postgresql --runs 150 --out results.csv 2> stderr.log
    grep -c "Exception ignored" stderr.log

PostgreSQL and Redis are expected on 127.0.0.1, as for the distributed tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import optuna  # noqa: E402

from mpsearch.search.storage import open_storage  # noqa: E402
from tests.test_distributed import remove_study, storage_url  # noqa: E402
from tests.test_fault_injection import start  # noqa: E402


def one_run(kind: str, folder: Path, index: int, rng: random.Random) -> dict:
    name = f"mpsearch-sigint-{uuid.uuid4().hex[:10]}"
    url = storage_url(kind, name, str(folder / f"{name}.log"))
    optuna.create_study(study_name=name, storage=open_storage(url), directions=["minimize", "maximize"])
    s = SimpleNamespace(kind=kind, url=url, name=name, dir=folder)
    sleep_s, delay_s = rng.choice([0.0, 0.01, 0.1]), rng.uniform(0.3, 2.0)
    worker = start(s, f"w{index}", seed=index, sleep_s=sleep_s)
    time.sleep(delay_s)
    alive = worker.is_alive()
    os.kill(worker.pid, signal.SIGINT)
    worker.join(60)
    if worker.exitcode is None:
        outcome, detail = "still running", "the Ctrl-C was lost"
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
    else:
        data = json.loads(worker.out.read_text()) if worker.out.exists() else {}
        if data == {"interrupted": True} and worker.exitcode == 130:
            outcome, detail = "interrupted", ""
        elif "crash" in data:
            outcome, detail = "crashed", data["crash"].strip().splitlines()[-1]
        else:
            outcome, detail = "other", f"exit {worker.exitcode}, {data}"
    remove_study(kind, url, name)
    return {"run": index, "sleep_s": sleep_s, "delay_s": round(delay_s, 3), "alive_at_sigint": alive,
            "outcome": outcome, "detail": detail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("postgresql", "redis", "journal"), default="postgresql")
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="a CSV of every run")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)
        for i in range(args.runs):
            row = one_run(args.storage, folder, i, rng)
            rows.append(row)
            if row["outcome"] != "interrupted":
                print(f"run {i}: {row['outcome']}: {row['detail']}", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    counts = Counter(r["outcome"] for r in rows)
    print(f"{args.storage}: {args.runs} runs: " + ", ".join(f"{n} {o}" for o, n in counts.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
