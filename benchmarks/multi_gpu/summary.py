"""Summarise a study measured by several workers: which worker measured what, on which GPU.

Writes OUT/summary.json and OUT/summary.md (run.sh calls it; it works on any stored study)::

    python benchmarks/multi_gpu/summary.py --study NAME --storage journal:DIR/NAME.log --out DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna

from mpsearch.search.record import read_spec
from mpsearch.search.results import pareto_frame
from mpsearch.search.storage import open_storage, redacted
from mpsearch.search.workers import duplicate_report, is_measurement, worker_summary


def host_gpus() -> list[dict[str, str]]:
    """This host's GPUs as nvidia-smi lists them (index in PCI bus order, as the workers were pinned)."""
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,pci.bus_id,uuid,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return []
    keys = ("index", "name", "pci_bus_id", "uuid", "driver")
    return [dict(zip(keys, (f.strip() for f in line.split(",")))) for line in out.stdout.strip().splitlines()]


def summarise(study: Any, storage_url: str, command: str, wall_s: float | None) -> dict[str, Any]:
    spec = read_spec(study)
    workers = worker_summary(study)
    measured = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and is_measurement(t)]
    front = pareto_frame(study)
    return {
        "study": study.study_name,
        "storage": redacted(storage_url),
        "command": command,
        "written_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host": socket.gethostname(),
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "network": spec.network["name"] if spec else None,
        "menu": spec.menu if spec else None,
        "backend": spec.backend if spec else None,
        "host_gpus": host_gpus(),
        "latency_devices": sorted({t.user_attrs.get("latency_device", "") for t in measured} - {""}),
        "latency_sources": sorted({t.user_attrs.get("latency_source", "") for t in measured} - {""}),
        "workers": json.loads(workers.to_json(orient="records")),
        "trials": duplicate_report(study),
        "pareto_front": json.loads(front.to_json(orient="records")) if not front.empty else [],
    }


def markdown(doc: dict[str, Any]) -> str:
    backend = doc["backend"] or {}
    lines = [
        f"# {doc['study']}: one study, {len(doc['workers'])} workers",
        "",
        f"`{doc['command']}` on host `{doc['host']}`, written {doc['written_utc']} UTC"
        + (f", {doc['wall_s']} s wall" if doc["wall_s"] is not None else "") + ".",
        "",
        f"- storage: `{doc['storage']}`",
        f"- network: {doc['network']}, menu {','.join(doc['menu'] or [])}",
        f"- latency: {', '.join(doc['latency_sources']) or 'none'} on {', '.join(doc['latency_devices']) or 'no device'}"
        f" (backend {backend.get('backend', '?')}; study device {backend.get('device', '?')})",
    ]
    versions = {k: v for k, v in backend.items() if k not in ("backend", "source", "device", "arch") and not isinstance(v, dict)}
    if versions:
        lines.append("- backend provenance: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if doc["host_gpus"]:
        lines += ["", "| GPU index | name | PCI bus | UUID |", "| --- | --- | --- | --- |"]
        lines += [f"| {g['index']} | {g['name']} | {g['pci_bus_id']} | {g['uuid']} |" for g in doc["host_gpus"]]
    lines += ["", "## Trials per worker", "",
              "| worker | index | GPU | device | measured | failed | repeats | collisions | died | measuring time (s) |",
              "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w in doc["workers"]:
        lines.append(f"| {w['worker']} | {w['worker_index']} | {w['gpu']} | {w['device']} | {w['measured']} | "
                     f"{w['failed']} | {w['repeats']} | {w['collisions']} | {w['died']} | {w['measure_s']:.1f} |")
    t = doc["trials"]
    lines += ["", f"{t['complete_measurements']} configurations measured ({t['distinct_configs_measured']} distinct, "
                  f"{t['duplicate_measurements']} measured twice); {t['collisions_prevented']} concurrent proposals of a "
                  f"configuration already being measured were not measured again; {t['repeats_answered_from_storage']} "
                  f"repeats answered from the study; {t['swept_dead_worker_trials']} trials of dead workers re-measured "
                  f"({t['retries']} retries).",
              "", f"## Pareto front ({len(doc['pareto_front'])} configurations)", ""]
    if doc["pareto_front"]:
        cols = list(doc["pareto_front"][0])
        lines += ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
        lines += ["| " + " | ".join(_cell(row[c]) for c in cols) + " |" for row in doc["pareto_front"]]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--started", type=float, help="unix time the run started (for the wall time)")
    parser.add_argument("--command", default="", help="the command that ran the study, for the record")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
    wall = None if args.started is None else time.time() - args.started
    doc = summarise(study, args.storage, args.command, wall)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "summary.md").write_text(markdown(doc))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'summary.md'}")


if __name__ == "__main__":
    main()
