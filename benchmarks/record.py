"""Record per-op and end-to-end latencies on this machine's GPU into ``mpsearch/data/recordings/<name>/``.

Runs the CUTLASS backend (tuned, float64-checked kernels, the sustained timing protocol) and writes
the recording format the replay backend reads (``mpsearch/data/recordings/README.md``): ``provenance.json``,
``ops.csv``, ``networks.csv``. A GPU session is short, so every phase stops at ``--deadline-s`` and
resumes: rows already written are kept and not measured again; tuned ops come from the tuning cache.

End-to-end rows are measured in passes over the whole space, each pass in its own shuffled order
(seeded by the pass number), and every pass is kept (column ``pass``): replay serves the samples of
all passes pooled, and a search can be judged against that multi-pass value.

    python benchmarks/record.py ops --out mpsearch/data/recordings/h200                 # tune + per-op rows
    python benchmarks/record.py networks --passes 3 --out mpsearch/data/recordings/h200 # mlp6, both menus
    python benchmarks/record.py import-study --storage sqlite:///x.db --name mlp6 --pass 1 --out ...
    python benchmarks/record.py provenance --out mpsearch/data/recordings/h200

Against a reference (``networks --reference CONFIG``): each configuration is timed alternately with
one fixed reference configuration, milliseconds apart (``measure_against_reference``), because under
the power cap the clock a process settles at moves a latency by several percent from one
measurement to the next while the ratio to a neighbouring reference stays put. Every sample of both
goes to ``paired.csv``; ``finalize`` then writes ``networks.csv`` with each configuration's samples
as ratio x the reference's median over the whole recording (one constant), and every pass kept.

    python benchmarks/record.py networks --reference fp16,int8,fp8_e4m3,fp16,int8,fp8_e4m3 --passes 3 --out DIR
    python benchmarks/record.py finalize --out DIR
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from mpsearch.backends.replay import NETWORKS_COLUMNS, OPS_COLUMNS, possible_ops
from mpsearch.network import preset
from mpsearch.space import SearchSpace

NETWORKS_WITH_PASS = NETWORKS_COLUMNS + ("pass",)

MENU_DEFAULT = ("fp16", "fp8_e4m3", "int8")
MENU_INT4 = ("fp16", "int8", "int4")
ALL_SM90 = ("fp16", "bf16", "fp8_e4m3", "int8", "int4")
# Per-op rows, in priority order (what the search benchmarks need first).
OP_PLAN = (
    ("mlp6", MENU_DEFAULT), ("mlp6", MENU_INT4),
    ("llama8b-block-prefill", ALL_SM90), ("llama8b-block-decode", ALL_SM90),
    ("mlp6", ALL_SM90), ("mlp6-decode", ALL_SM90),
)
NETWORK_PLAN = {"default": ("mlp6", MENU_DEFAULT), "int4": ("mlp6", MENU_INT4), "all": ("mlp6", ALL_SM90)}


def sig(x: float) -> str:
    """4 significant digits, the recording's precision."""
    return f"{x:.4g}"


def make_backend(args: argparse.Namespace):
    from mpsearch.backends.cutlass import CutlassBackend

    return CutlassBackend(cache_dir=args.cache_dir, jobs=args.jobs, local_search=args.local_search)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def op_row(rec: dict) -> dict:
    return {
        "kind": rec["kind"], "m": rec["m"], "n": rec["n"], "k": rec["k"], "fmt": rec["fmt"], "out_fmt": rec["out_fmt"],
        "median_ms": sig(rec["median_ms"]), "p10_ms": sig(rec["p10_ms"]), "p90_ms": sig(rec["p90_ms"]),
        "n_samples": rec["n_samples"], "samples_ms": " ".join(sig(s) for s in rec["samples_ms"]),
        "kernel": rec["kernel"], "check_rel_err": f"{rec['check_rel_err']:.3g}",
    }


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_ops(out: Path, rows: dict) -> None:
    tmp = out / "ops.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=OPS_COLUMNS)
        writer.writeheader()
        for key in sorted(rows, key=str):
            writer.writerow(rows[key])
    os.replace(tmp, out / "ops.csv")


def cmd_ops(args: argparse.Namespace) -> None:
    backend = make_backend(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.deadline_s
    rows: dict[tuple, dict] = {}
    for row in _read_rows(out / "ops.csv"):
        rows[(row["kind"], int(row["m"]), int(row["n"]), int(row["k"]), row["fmt"], row["out_fmt"])] = row
    failures = []
    plan = [p for p in OP_PLAN if (not args.only or p[0] in args.only)
            and any(p[1] == NETWORK_PLAN[m][1] for m in args.menus.split(","))]
    hung = False
    for name, menu in plan:
        if hung:
            break
        network = preset(name)
        ops = sorted(possible_ops(SearchSpace(network, menu)).values(), key=lambda o: (o.kind, -o.m * o.n * o.k))
        missing = [op for op in ops if (op.kind, op.m, op.n, op.k, op.fmt, op.out_fmt) not in rows]
        say(f"{name} {','.join(menu)}: {len(ops)} distinct ops, {len(missing)} not recorded")
        if not missing:
            continue  # prepare would compile and tune the whole menu for nothing
        backend.prepare(network, menu)
        for op in missing:
            key = (op.kind, op.m, op.n, op.k, op.fmt, op.out_fmt)
            if time.monotonic() > deadline:
                say("deadline reached: stopping (rerun to continue from the tuning cache)")
                break
            try:
                rec = backend.tune(op)
            except Exception as err:  # record why, go on with the other ops
                if "hangs" in str(err):
                    say(f"  HANG {key}: {err}")
                    hung = True
                    break
                failures.append(f"{key}: {type(err).__name__}: {err}")
                say(f"  FAILED {key}: {err}")
                continue
            rows[key] = op_row(rec)
            if len(rows) % 20 == 0:
                _write_ops(out, rows)
            say(f"  {op.kind} {op.m}x{op.n}x{op.k} {op.fmt}->{op.out_fmt}: {rec['median_ms']:.4f} ms  {rec['kernel']}  err {rec['check_rel_err']:.2e}")
    _write_ops(out, rows)
    (out / "ops_failures.txt").write_text("\n".join(failures) + ("\n" if failures else ""))
    say(f"wrote {len(rows)} op rows, {len(failures)} failures")


def _network_row(name: str, fingerprint: str, config_key: str, samples: list[float], pass_no) -> dict:
    q = statistics.quantiles(samples, n=10, method="inclusive")
    return {"network": name, "fingerprint": fingerprint, "config": config_key,
            "median_ms": sig(statistics.median(samples)), "p10_ms": sig(q[0]), "p90_ms": sig(q[-1]),
            "n_samples": len(samples), "samples_ms": " ".join(sig(s) for s in samples), "pass": pass_no}


PAIRED_COLUMNS = ("network", "fingerprint", "config", "pass", "reference", "ratio", "rounds", "stop", "seconds",
                  "sm_mhz", "power_w", "target_samples_ms", "reference_samples_ms")


def _paired_row(name: str, fingerprint: str, config_key: str, reference_key: str, paired, pass_no: int) -> dict:
    rows = paired.target.telemetry
    sm = [r["sm_mhz"] for r in rows if r.get("sm_mhz")]
    power = [r["power_w"] for r in rows if r.get("power_w")]
    return {"network": name, "fingerprint": fingerprint, "config": config_key, "pass": pass_no,
            "reference": reference_key, "ratio": f"{paired.ratio:.6g}", "rounds": len(paired.ratios),
            "stop": paired.stop, "seconds": f"{paired.target.seconds:.3f}",
            "sm_mhz": f"{statistics.median(sm):.0f}" if sm else "", "power_w": f"{statistics.median(power):.1f}" if power else "",
            # six digits: the ratios are recomputed from these two columns
            "target_samples_ms": " ".join(f"{x:.6g}" for x in paired.target.samples),
            "reference_samples_ms": " ".join(f"{x:.6g}" for x in paired.reference.samples)}


def _run_passes(args: argparse.Namespace, backend, done: set, deadline: float, start_menu) -> None:
    """Every configuration of each menu in ``--menus`` (only those in ``--configs`` if given), pass by
    pass from ``--first-pass`` to ``--passes``, each pass in its own shuffled order (seeded by the
    pass number), skipping (fingerprint, config, pass) in ``done``. ``start_menu(name, network,
    space, pass_no)`` returns (measure, label): ``measure(config)`` measures and stores one
    configuration and returns a progress note. Stops at the deadline or at a hanging kernel."""
    wanted = set(Path(args.configs).read_text().split()) if args.configs else None
    for pass_no in range(args.first_pass, args.passes + 1):
        for menu_key in args.menus.split(","):
            name, menu = NETWORK_PLAN[menu_key]
            network = preset(name)
            space = SearchSpace(network, menu)
            backend.prepare(network, menu)
            measure, label = start_menu(name, network, space, pass_no)
            configs = list(space.all_configs())
            random.Random(pass_no).shuffle(configs)
            if wanted is not None:
                configs = [c for c in configs if c.key in wanted]
            todo = [c for c in configs if (network.fingerprint(), c.key, pass_no) not in done]
            say(f"pass {pass_no}: {name} {','.join(menu)}{label}: {len(configs)} configs, {len(todo)} to measure")
            start = time.monotonic()
            for i, config in enumerate(todo):
                if time.monotonic() > deadline:
                    say("deadline reached: stopping (rerun to continue)")
                    return
                try:
                    note = measure(config)
                except Exception as err:  # a config whose kernels fail is left out, and said so
                    say(f"  FAILED {name} {config.key}: {type(err).__name__}: {err}"[:400])
                    if "hangs" in str(err):
                        return
                    continue
                done.add((network.fingerprint(), config.key, pass_no))
                if i % 50 == 0:
                    say(f"  {i + 1}/{len(todo)} ({time.monotonic() - start:.0f} s): {config.key} {note}")
            say(f"pass {pass_no} {menu_key}: {len(todo)} configs in {time.monotonic() - start:.0f} s")


def _csv_appender(path: Path, columns: tuple[str, ...]):
    new_file = not path.exists()
    f = open(path, "a", newline="")
    writer = csv.DictWriter(f, fieldnames=columns)
    if new_file:
        writer.writeheader()
    return f, writer


def cmd_networks(args: argparse.Namespace) -> None:
    """Every configuration of each menu in ``--menus``, ``--passes`` times, each pass shuffled; alone
    into networks.csv, or with ``--reference`` against that configuration into paired.csv."""
    backend = make_backend(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.deadline_s
    path = out / ("paired.csv" if args.reference else "networks.csv")
    done = {(r["fingerprint"], r["config"], int(r.get("pass") or 1)) for r in _read_rows(path)}
    f, writer = _csv_appender(path, PAIRED_COLUMNS if args.reference else NETWORKS_WITH_PASS)

    def alone(name, network, space, pass_no):
        def measure(config) -> str:
            result = backend.measure(network, config)
            writer.writerow(_network_row(name, network.fingerprint(), config.key, list(result.samples), pass_no))
            f.flush()
            # The clocks and power each measurement ran at, beside networks.csv (whose columns replay reads).
            telemetry = result.extra["timing"].get("telemetry", {})
            with open(out / "networks_telemetry.jsonl", "a") as side:
                side.write(json.dumps({"network": name, "config": config.key, "pass": pass_no, **{
                    key: telemetry[key]["median"] for key in ("sm_mhz", "power_w") if key in telemetry}}) + "\n")
            return (f"{result.ms:.3f} ms ({result.extra['timing']['n_samples']} samples, "
                    f"{result.extra['timing']['stop']})")
        return measure, ""

    def against_reference(name, network, space, pass_no):
        reference = space.parse_config(args.reference)
        reference_launch = backend.checked_network_launch(network, list(reference.formats))

        def measure(config) -> str:
            launch = backend.checked_network_launch(network, list(config.formats))
            paired = backend.time_against_reference(launch, reference_launch,
                                                    f"network {name} {config.key} against {reference.key}")
            writer.writerow(_paired_row(name, network.fingerprint(), config.key, reference.key, paired, pass_no))
            f.flush()
            return f"ratio {paired.ratio:.4f} ({len(paired.ratios)} rounds, {paired.stop}, {paired.target.seconds:.2f} s)"
        return measure, f" against {reference.key}"

    with f:
        _run_passes(args, backend, done, deadline, against_reference if args.reference else alone)


def paired_networks_rows(paired_rows: list[dict]) -> tuple[list[dict], dict[str, float]]:
    """networks.csv rows from paired.csv rows: each configuration's samples are its per-round
    ratios x the reference's median over every row of the same network and reference (so all
    configurations share one scale). Returns the rows and {fingerprint/reference: that median}."""
    by_reference: dict[tuple[str, str], list[float]] = {}
    for r in paired_rows:
        by_reference.setdefault((r["fingerprint"], r["reference"]), []).extend(
            float(x) for x in r["reference_samples_ms"].split())
    scale = {key: statistics.median(values) for key, values in by_reference.items()}
    rows = []
    for r in paired_rows:
        ref_ms = scale[(r["fingerprint"], r["reference"])]
        xs = [float(x) for x in r["target_samples_ms"].split()]
        rs = [float(x) for x in r["reference_samples_ms"].split()]
        if len(xs) != len(rs) or len(xs) < 2:
            raise SystemExit(f"paired.csv: {r['config']} pass {r['pass']}: target and reference samples must pair up")
        samples = [x / y * ref_ms for x, y in zip(xs, rs)]
        rows.append(_network_row(r["network"], r["fingerprint"], r["config"], samples, r["pass"]))
    return rows, {f"{fp}/{ref}": ms for (fp, ref), ms in scale.items()}


def cmd_finalize(args: argparse.Namespace) -> None:
    """networks.csv from paired.csv (see the module docstring); the scale goes to reference.json."""
    out = Path(args.out)
    rows, scale = paired_networks_rows(_read_rows(out / "paired.csv"))
    tmp = out / "networks.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=NETWORKS_WITH_PASS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "networks.csv")
    (out / "reference.json").write_text(json.dumps({"reference_median_ms": scale}, indent=1) + "\n")
    say(f"wrote {len(rows)} end-to-end rows; reference medians {scale}")


def cmd_import_study(args: argparse.Namespace) -> None:
    """End-to-end rows from a study measured by ``mpsearch enumerate`` (its trials' samples) as one pass."""
    from mpsearch.network import Network
    from mpsearch.search.storage import open_storage
    from mpsearch.search.study import load_study

    study, spec = load_study(open_storage(args.storage), args.storage, args.name)
    network = Network.from_dict(spec.network)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "networks.csv"
    done = {(r["fingerprint"], r["config"], int(r.get("pass") or 1)) for r in _read_rows(path)}
    f, writer = _csv_appender(path, NETWORKS_WITH_PASS)
    added = 0
    with f:
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            samples = attrs.get("latency_samples_ms")
            if trial.state.name != "COMPLETE" or not samples or "repeat_of" in attrs or attrs.get("latency_source") != "measured":
                continue
            key = attrs["config"]  # the canonical formats in layer order, as every measured trial stores them
            if (network.fingerprint(), key, args.pass_no) in done:
                continue
            writer.writerow(_network_row(args.network_name or spec.network["name"], network.fingerprint(), key, samples,
                                         args.pass_no))
            added += 1
    say(f"imported {added} configurations of study {args.name} as pass {args.pass_no}")


def _covered_plans(out: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The op-plan entries that ops.csv holds every op of, failures aside."""
    have = {(r["kind"], int(r["m"]), int(r["n"]), int(r["k"]), r["fmt"], r["out_fmt"]) for r in _read_rows(out / "ops.csv")}
    failed = (out / "ops_failures.txt").read_text() if (out / "ops_failures.txt").exists() else ""
    covered = []
    for name, menu in OP_PLAN:
        ops = possible_ops(SearchSpace(preset(name), menu))
        if all(key in have or str(key) in failed for key in ops):
            covered.append((name, menu))
    return covered


def _failed_ops(out: Path) -> int:
    path = out / "ops_failures.txt"
    return len([line for line in path.read_text().splitlines() if line.strip()]) if path.exists() else 0


def cmd_provenance(args: argparse.Namespace) -> None:
    backend = make_backend(args)
    prov = backend.provenance()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ops_n = len(_read_rows(out / "ops.csv"))
    nets = _read_rows(out / "networks.csv")
    passes: dict[str, set[int]] = {}
    for r in nets:
        passes.setdefault(r["config"], set()).add(int(r.get("pass") or 1))
    from mpsearch.backends.cutlass import catalog

    record = {
        **{k: prov[k] for k in ("device", "arch", "driver", "cuda", "cutlass", "torch", "mpsearch", "nvcc", "cuda_python",
                                "kernel_build", "fp8_fast_accum", "local_search", "regime", "timing", "telemetry")},
        "date": dt.date.today().isoformat(),
        "protocol": ("sustained timing protocol (mpsearch.backends.timing): steady state before sampling, samples "
                     "until the median's 95% interval is within +-0.5% or a recorded cap, L2 flushed before each "
                     "sample, spin-held launch queue, NVML telemetry"),
        "backend": ("mpsearch CUTLASS backend (" + ("stage-1 tuning only: every stage-1 design timed per shape and "
                                                    "format pair" if not prov.get("local_search") else
                                                    "two-stage tuning per shape and format pair") + ", float64-checked)"),
        "stage1_designs": [d.key(64) for d in catalog.STAGE1],
        "notes": (
            f"{ops_n} ops; {len(nets)} end-to-end rows over {len(passes)} configurations "
            f"({sum(len(v) for v in passes.values())} config-passes). Ops: every op Network.ops() produces for "
            + "; ".join(f"{n} over {{{','.join(m)}}}" for n, m in _covered_plans(out))
            + (f" ({failed} op(s) failed, listed in ops_failures.txt)" if (failed := _failed_ops(out)) else "")
            + ". End to end: " + "; ".join(sorted({f"{r['network']} ({len(passes)} configurations)" for r in nets}))
            + ", each configuration in every pass listed in column pass (shuffled order per pass). kernel = the "
              "tuned choice for that op; a GEMM whose output no epilogue writes (int4) says '+ separate "
              "<conversion>' and includes it. int4 runs CUTLASS's sm_80 kernels, emulated on sm_90. "
              "GEMMs compute D = sat(alpha * A @ W^T), A row-major, W [N,K]. " + args.notes
        ),
    }
    if (out / "reference.json").exists():
        scale = json.loads((out / "reference.json").read_text())["reference_median_ms"]
        record["protocol"] = (
            "paired with a reference: each configuration end to end alternately with one reference "
            "configuration (L2 flushed before each sample, CUDA events), after the sustained warm-up over both, "
            "until the median of the per-round ratios is within +-0.5% or a recorded cap; a configuration's "
            "samples are its ratios x the reference's median over the whole recording. Per-op rows: " + record["protocol"])
        record["reference_median_ms"] = scale
        record["notes"] += (" End-to-end rows were measured against a reference (paired.csv keeps every raw sample "
                            "of both, with SM clock and power); networks.csv is derived from it by "
                            "`benchmarks/record.py finalize`.")
    (out / "provenance.json").write_text(json.dumps(record, indent=1) + "\n")
    say(f"wrote {out / 'provenance.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("ops", "networks", "finalize", "import-study", "provenance"))
    parser.add_argument("--out", default="mpsearch/data/recordings/h200")
    parser.add_argument("--cache-dir", default=os.environ.get("MPSEARCH_CACHE_DIR"))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--local-search", type=int, default=0,
                        help="CUTLASS stage-2 designs tried around each heavy op's stage-1 winner (default 0: stage-1 "
                             "tuning only, as the shipped H200 recording was made; overrides MPSEARCH_LOCAL_SEARCH; the provenance "
                             "records the value)")
    parser.add_argument("--deadline-s", type=float, default=1e9, help="stop (resumably) after this many seconds")
    parser.add_argument("--only", nargs="*", help="ops: only these presets")
    parser.add_argument("--passes", type=int, default=3, help="networks: passes over each space")
    parser.add_argument("--first-pass", type=int, default=1, help="networks: the pass to start at (earlier ones "
                                                                  "recorded elsewhere, e.g. by mpsearch enumerate)")
    parser.add_argument("--menus", default="default,int4",
                        help="default (fp16,fp8,int8) and/or int4; ops: the op plan entries over these menus "
                             "(the 5-format entries are taken only with 'all')")
    parser.add_argument("--reference", help="networks: time every configuration against this one (paired.csv; "
                                            "then run finalize)")
    parser.add_argument("--configs", help="networks --reference: only the configurations listed in this file "
                                          "(one per line), e.g. those whose passes disagree, for more passes")
    parser.add_argument("--storage", help="import-study: the study's storage URL")
    parser.add_argument("--name", help="import-study: the study's name")
    parser.add_argument("--network-name", help="import-study: the network column (default: the study's network)")
    parser.add_argument("--pass", dest="pass_no", type=int, default=1, help="import-study: the pass it counts as")
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    {"ops": cmd_ops, "networks": cmd_networks, "finalize": cmd_finalize, "import-study": cmd_import_study,
     "provenance": cmd_provenance}[args.phase](args)


if __name__ == "__main__":
    sys.exit(main())
