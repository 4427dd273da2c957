"""How often do parallel workers still propose, and measure, a configuration twice?

For each storage (journal file, PostgreSQL, Redis on 127.0.0.1) and sampler, it creates a study,
starts WORKERS ``mpsearch worker`` processes with ``--trials PER_WORKER`` each, and counts from the
stored trials:

- *collisions*: a worker proposed a configuration another worker was measuring at that moment; the
  claim check stopped it (without claims each would have been a duplicate measurement);
- *duplicate measurements*: a configuration measured (COMPLETE) more than once: what got through;
- *repeats*: proposals of an already-measured configuration, answered from the study.

Latency is modelled (roofline, H100) and a plug-in objective sleeps SLEEP_S per measurement so
workers overlap as GPU workers do. Writes benchmarks/results/distributed_duplicates.{json,md}::

    PYTHONPATH=. python benchmarks/multi_gpu/duplicates.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from mpsearch.search.storage import open_storage
from mpsearch.search.workers import duplicate_report

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
OBJECTIVES = ["--objective", "latency", "--objective", "cap=tests.fakes:slow_capacity:maximize"]


def cli(*args: str, env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mpsearch.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _logged(log: Path, pid: int) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.split()[0] == str(pid))


def one_run(kind: str, sampler: str, network: str, formats: str, workers: int, per_worker: int,
            sleep_s: float, seed: int, tmp: Path, kills: int = 0) -> dict:
    """One study; with ``kills``, that many times a random worker is killed (SIGKILL) mid-run and a
    replacement started (it sweeps the dead worker's trial and the configuration is measured again)."""
    name = f"dup-{uuid.uuid4().hex[:10]}"
    url = {"journal": f"journal:{tmp}/{name}.log", "postgresql": PG, "redis": f"{REDIS}?prefix={name}"}[kind]
    log = tmp / f"{name}.measured"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPSEARCH_FAKE_SLEEP_S": str(sleep_s), "MPSEARCH_FAKE_LOG": str(log)}
    create = cli("search", network, "--study-name", name, "--storage", url, "--backend", "roofline", "--formats", formats,
                 "--sampler", sampler, "--seed", str(seed), "--workers", "0", "--trials", str(workers * per_worker),
                 "--no-progress", *OBJECTIVES, env=env, cwd=tmp)
    out, _ = create.communicate()
    if create.returncode:
        raise SystemExit(f"creating the study failed:\n{out}")
    start = time.monotonic()
    procs = [cli("worker", name, "--storage", url, "--trials", str(per_worker), "--worker-index", str(i),
                 "--no-progress", *OBJECTIVES[2:], env=env, cwd=tmp) for i in range(workers)]
    rng = random.Random(seed)
    for k in range(kills):
        live = [p for p in procs if p.poll() is None]
        if not live:
            break
        victim = rng.choice(live)
        # Kill it once it is measuring (5 measurements logged), at a random point of a measurement.
        while victim.poll() is None and _logged(log, victim.pid) < 5:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, sleep_s))
        victim.kill()
        victim.communicate()
        procs.remove(victim)
        procs.append(cli("worker", name, "--storage", url, "--trials", str(per_worker), "--worker-index",
                         str(workers + k), "--no-progress", *OBJECTIVES[2:], env=env, cwd=tmp))
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a worker failed:\n{out}")
    wall = time.monotonic() - start
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    report = duplicate_report(study)
    optuna.delete_study(study_name=name, storage=storage)
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{name}:*"))
        if keys:
            client.delete(*keys)
    report.pop("duplicated_configs")
    return {"storage": kind, "sampler": sampler, "network": network, "formats": formats, "workers": workers,
            "trials_per_worker": per_worker, "kills": kills, "sleep_s": sleep_s, "wall_s": round(wall, 1), **report}


def render(doc: dict) -> str:
    rows = doc["runs"]
    lines = [
        "# Duplicate measurements with parallel workers",
        "",
        f"`{doc['command']}` on `{doc['host']}` (CPU; 2 cores, shared with other work: wall times are noisy), "
        f"{doc['written_utc']} UTC. Latency modelled (roofline, NVIDIA H100 80GB HBM3); each measurement sleeps "
        "20 ms in a plug-in objective so workers overlap. *Collisions*: a worker proposed a configuration another "
        "worker was measuring at that moment and did not measure it (without the claim check, each would be a "
        "duplicate measurement). *Duplicates*: configurations measured twice anyway. *Killed*: a random worker "
        "killed with SIGKILL while measuring, and a replacement started.",
        "",
        "| storage | sampler | space | workers x trials | killed | measured | distinct | duplicates | collisions | "
        "repeats | dead workers' trials: swept / re-measured / left running | wall (s) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        space = "729 (mlp6)" if r["network"] == "mlp6" else f"27 ({r['network']})"
        lines.append(f"| {r['storage']} | {r['sampler']} | {space} | {r['workers']} x {r['trials_per_worker']} | "
                     f"{r['kills']} | {r['complete_measurements']} | {r['distinct_configs_measured']} | "
                     f"{r['duplicate_measurements']} | {r['collisions_prevented']} | {r['repeats_answered_from_storage']} | "
                     f"{r['swept_dead_worker_trials']} / {r['retries']} / {r['running']} | {r['wall_s']} |")
    total = sum(r["complete_measurements"] for r in rows)
    collisions = sum(r["collisions_prevented"] for r in rows)
    lines += [
        "",
        f"In all: {sum(r['duplicate_measurements'] for r in rows)} duplicate measurements in {total} measured "
        f"configurations; {collisions} collisions prevented ({100 * collisions / max(1, total):.2f}% of "
        f"measurements); {sum(r['kills'] for r in rows)} workers killed, {sum(r['swept_dead_worker_trials'] for r in rows)} "
        f"of their trials swept and {sum(r['retries'] for r in rows)} re-measured. A swept trial is re-measured when "
        "the worker had chosen its configuration (a worker killed before that measured nothing); *left running*: "
        "dead workers' trials still RUNNING when the study ended. A shared budget of 200 can end at 201: two workers "
        "checking it at the same instant may both start the last measurement (at most workers - 1 over).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one storage, one sampler (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown from the stored JSON")
    args = parser.parse_args()
    if args.render:
        doc = json.loads((args.out / "distributed_duplicates.json").read_text())
        (args.out / "distributed_duplicates.md").write_text(render(doc))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # mlp6 over fp16,fp8,int8 has 729 configurations (200 trials: a realistic search); the 3-layer
    # space has 27, where 4 workers x 5 trials must collide often: the stress case for claims.
    plans = [(kind, sampler, "mlp6", "fp16,fp8,int8", 4, 50)
             for kind in ("journal", "postgresql", "redis") for sampler in ("tpe", "random")]
    plans += [("journal", sampler, str(REPO / "tests/data/tiny_mlp3.toml"), "fp16,fp8,int8", 4, 5)
              for sampler in ("tpe", "random")]
    # Faults: 3 workers killed with SIGKILL mid-run, each replaced by a new worker.
    plans += [(kind, "tpe", "mlp6", "fp16,fp8,int8", 4, 50, 3) for kind in ("journal", "postgresql", "redis")]
    if args.quick:
        plans = plans[:1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, plan in enumerate(plans):
            row = one_run(*plan[:6], sleep_s=0.02, seed=100 + i, tmp=Path(tmp), kills=plan[6] if len(plan) > 6 else 0)
            row["network"] = Path(row["network"]).stem
            print(json.dumps(row))
            rows.append(row)
    doc = {"what": __doc__.split("\n\n")[0], "host": socket.gethostname(),
           "written_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
           "command": "PYTHONPATH=. python benchmarks/multi_gpu/duplicates.py", "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed_duplicates.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "distributed_duplicates.md").write_text(render(doc))
    print(f"wrote {args.out / 'distributed_duplicates.json'} and .md")


if __name__ == "__main__":
    main()
