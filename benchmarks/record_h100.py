"""Record per-op and end-to-end latencies on this machine's GPU into ``studies/data/<name>/``.

Runs the CUTLASS backend (tuned, checked kernels) and writes the recording format that the replay
backend reads (see ``mpsearch/backends/replay.py``): ``provenance.json``, ``ops.csv``, ``networks.csv``.
Each phase can stop at a deadline and be resumed: finished end-to-end rows already in the output's
``networks.csv`` are kept and not measured again; tuned ops come from the backend's tuning cache.

    python benchmarks/record_h100.py compile --out studies/data/h100          # compile every kernel
    python benchmarks/record_h100.py ops --out studies/data/h100              # tune + per-op rows
    python benchmarks/record_h100.py networks --out studies/data/h100         # 729 + 729 mlp6 configs
    python benchmarks/record_h100.py provenance --out studies/data/h100
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from mpsearch.backends.replay import possible_ops
from mpsearch.network import preset
from mpsearch.space import SearchSpace

OPS_COLUMNS = ("kind", "m", "n", "k", "fmt", "out_fmt", "median_ms", "p10_ms", "p90_ms", "n_samples",
               "samples_ms", "kernel", "check_rel_err")
NETWORKS_COLUMNS = ("network", "fingerprint", "config", "median_ms", "p10_ms", "p90_ms", "n_samples", "samples_ms")

# What is recorded, in priority order (the first entries are what colleagues' benchmarks need).
MENU_DEFAULT = ("fp16", "fp8_e4m3", "int8")
MENU_INT4 = ("fp16", "int8", "int4")
ALL_SM90 = ("fp16", "bf16", "fp8_e4m3", "int8", "int4")
OP_PLAN = (
    ("mlp6", MENU_DEFAULT), ("mlp6", MENU_INT4),
    ("llama8b-block-prefill", ALL_SM90), ("llama8b-block-decode", ALL_SM90),
    ("mlp6-decode", MENU_DEFAULT), ("mlp6-decode", MENU_INT4),
)
NETWORK_PLAN = (("mlp6", MENU_DEFAULT), ("mlp6", MENU_INT4))


def sig(x: float) -> str:
    """4 significant digits, the recording's precision."""
    return f"{x:.4g}"


def make_backend(args: argparse.Namespace):
    from mpsearch.backends.cutlass import CutlassBackend

    return CutlassBackend(cache_dir=args.cache_dir, warmup=args.warmup, repeats=args.repeats, jobs=args.jobs)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_compile(args: argparse.Namespace) -> None:
    backend = make_backend(args)
    pairs = set()
    for name, menu in OP_PLAN:
        network = preset(name)
        for op in possible_ops(SearchSpace(network, menu)).values():
            if op.kind == "gemm":
                pairs.add((op.fmt, op.out_fmt))
    say(f"compiling kernels for {len(pairs)} (in, out) format pairs")
    backend.compile_pairs(sorted(pairs))
    for report in backend.compile_reports:
        say(f"compile: {report.compiled} compiled, {report.cached} cached, {len(report.failed)} failed, {report.seconds:.0f} s")
        for name, err in sorted(report.failed.items()):
            say(f"  FAILED {name}: {err[:300]}")


def op_row(rec: dict) -> dict:
    return {
        "kind": rec["kind"], "m": rec["m"], "n": rec["n"], "k": rec["k"], "fmt": rec["fmt"], "out_fmt": rec["out_fmt"],
        "median_ms": sig(rec["median_ms"]), "p10_ms": sig(rec["p10_ms"]), "p90_ms": sig(rec["p90_ms"]),
        "n_samples": rec["n_samples"], "samples_ms": " ".join(sig(s) for s in rec["samples_ms"]),
        "kernel": rec["kernel"], "check_rel_err": f"{rec['check_rel_err']:.3g}",
    }


def cmd_ops(args: argparse.Namespace) -> None:
    backend = make_backend(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.deadline_s
    rows: dict[tuple, dict] = {}
    failures = []
    plan = [p for p in OP_PLAN if not args.only or p[0] in args.only]
    hung = False
    for name, menu in plan:
        if hung:
            break
        network = preset(name)
        ops = sorted(possible_ops(SearchSpace(network, menu)).values(), key=lambda o: (o.kind, -o.m * o.n * o.k))
        say(f"{name} {','.join(menu)}: {len(ops)} distinct ops")
        for op in ops:
            key = (op.kind, op.m, op.n, op.k, op.fmt, op.out_fmt)
            if key in rows:
                continue
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
            say(f"  {op.kind} {op.m}x{op.n}x{op.k} {op.fmt}->{op.out_fmt}: {rec['median_ms']:.4f} ms  {rec['kernel']}  err {rec['check_rel_err']:.2e}")
    with open(out / "ops.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=OPS_COLUMNS)
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow(rows[key])
    (out / "ops_failures.txt").write_text("\n".join(failures) + ("\n" if failures else ""))
    say(f"wrote {len(rows)} op rows, {len(failures)} failures")


def cmd_networks(args: argparse.Namespace) -> None:
    import statistics

    backend = make_backend(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "networks.csv"
    done: set[tuple[str, str]] = set()
    if path.exists():
        with open(path) as f:
            done = {(r["fingerprint"], r["config"]) for r in csv.DictReader(f)}
    new_file = not path.exists()
    deadline = time.monotonic() + args.deadline_s
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=NETWORKS_COLUMNS)
        if new_file:
            writer.writeheader()
        for name, menu in NETWORK_PLAN:
            network = preset(name)
            space = SearchSpace(network, menu)
            backend.prepare(network, menu)
            configs = list(space.all_configs())
            todo = [c for c in configs if (network.fingerprint(), c.key) not in done]
            say(f"{name} {','.join(menu)}: {len(configs)} configs, {len(todo)} to measure")
            start = time.monotonic()
            for i, config in enumerate(todo):
                if time.monotonic() > deadline:
                    say("deadline reached: stopping (rerun to continue)")
                    return
                try:
                    for op in network.ops(config.formats):
                        backend.tune(op)
                    samples = backend.time_network(network, config)
                except Exception as err:  # a config whose kernels fail is left out, and said so
                    say(f"  FAILED {name} {config.key}: {type(err).__name__}: {err}"[:400])
                    if "hangs" in str(err):
                        return
                    continue
                q = statistics.quantiles(samples, n=10, method="inclusive")
                writer.writerow({
                    "network": name, "fingerprint": network.fingerprint(), "config": config.key,
                    "median_ms": sig(statistics.median(samples)), "p10_ms": sig(q[0]), "p90_ms": sig(q[-1]),
                    "n_samples": len(samples), "samples_ms": " ".join(sig(s) for s in samples),
                })
                done.add((network.fingerprint(), config.key))
                if i % 100 == 0:
                    f.flush()
                    say(f"  {i + 1}/{len(todo)} ({time.monotonic() - start:.0f} s): {config.key} {statistics.median(samples):.3f} ms")


def cmd_smoke(args: argparse.Namespace) -> None:
    """A quick end-to-end exercise of every code path with one tile per kernel type."""
    import traceback

    from mpsearch.backends.cutlass import CutlassBackend
    from mpsearch.network import Layer, Network
    from mpsearch.space import Config

    backend = CutlassBackend(cache_dir=args.cache_dir, warmup=args.warmup, repeats=args.repeats, jobs=args.jobs,
                             tiles=1, int4_tiles=1)
    say(f"device {backend.device} sm_{backend.arch}; provenance {json.dumps(backend.provenance())}")
    chained = Network("smoke-mlp", (Layer("fc1", 256, 512, 1024), Layer("fc2", 256, 256, 512), Layer("fc3", 256, 1024, 256)))
    unchained = Network("smoke-block", (Layer("q", 64, 512, 1024), Layer("up", 64, 1024, 512)), chained=False)
    cases = [(chained, c) for c in ("fp16,fp16,fp16", "fp8_e4m3,fp8_e4m3,fp8_e4m3", "int8,int8,int8",
                                    "fp16,fp8_e4m3,int8", "int8,fp8_e4m3,fp16", "fp16,int4,int8", "int4,int4,int4",
                                    "bf16,bf16,fp16")]
    cases += [(unchained, c) for c in ("fp16,fp16", "fp8_e4m3,int8", "int4,bf16")]
    for network, text in cases:
        formats = text.split(",")
        try:
            backend.prepare(network, tuple(dict.fromkeys(formats)))
            result = backend.measure(network, Config(network.layer_names, tuple(formats)))
            say(f"OK {network.name} {text}: {result.describe()} per-layer {result.per_layer_ms}")
            for label, kernel in result.extra["kernels"].items():
                say(f"    {label}: {kernel}  err {result.extra['check_rel_err'][label]:.2e}")
        except Exception:
            say(f"FAIL {network.name} {text}:\n{traceback.format_exc()}")


def cmd_provenance(args: argparse.Namespace) -> None:
    backend = make_backend(args)
    prov = backend.provenance()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ops_n = nets_n = 0
    if (out / "ops.csv").exists():
        ops_n = sum(1 for _ in open(out / "ops.csv")) - 1
    if (out / "networks.csv").exists():
        nets_n = sum(1 for _ in open(out / "networks.csv")) - 1
    tiles = {}
    for fmt in ALL_SM90:
        out_fmt = "fp16"
        tiles[fmt] = [s.tile for s in backend.candidate_specs(fmt, out_fmt)]
    record = {
        "device": prov["device"], "arch": prov["arch"], "driver": prov["driver"], "cuda": prov["cuda"],
        "cutlass": prov["cutlass"], "torch": prov["torch"], "mpsearch": prov["mpsearch"],
        "date": dt.date.today().isoformat(),
        "timing": {"warmup": args.warmup, "repeats": args.repeats, "l2": prov["timing"]["l2"],
                   "clock": prov["timing"]["clock"]},
        "nvcc": prov["nvcc"], "cuda_python": prov["cuda_python"],
        "backend": "mpsearch CUTLASS backend (tuned per shape and format pair, float64-checked)",
        "candidate_tiles": tiles,
        "notes": (
            f"{ops_n} ops and {nets_n} end-to-end configurations. Ops: every op Network.ops() produces for "
            + "; ".join(f"{n} over {{{','.join(m)}}}" for n, m in OP_PLAN)
            + ". End to end: every configuration of "
            + "; ".join(f"{n} over {{{','.join(m)}}}" for n, m in NETWORK_PLAN)
            + ". kernel = the fastest of the candidate tiles for that op (tile description); a GEMM whose "
              "output format no epilogue writes (int4) says '+ separate <conversion>' and its row includes that "
              "conversion's time. int4 runs CUTLASS's sm_80 kernels, emulated on sm_90 (no int4 tensor cores). "
              "fp8 uses the FP8FastAccum schedules. GEMMs compute D = sat(alpha * A @ W^T), A row-major, W [N,K]. "
              + "Left out (device time): for the chained MLPs (mlp6, mlp6-decode), the ops that only the full "
              "5-format menu produces (bf16 in or out, and fp8<->int4 boundaries); the llama8b presets are covered "
              "for every sm_90 format (the 10-block preset shares the 1-block shapes). The 64 configurations common "
              "to both mlp6 menus (fp16/int8 only) are recorded once in networks.csv. " + args.notes
        ),
    }
    (out / "provenance.json").write_text(json.dumps(record, indent=1) + "\n")
    say(f"wrote {out / 'provenance.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("smoke", "compile", "ops", "networks", "provenance"))
    parser.add_argument("--out", default="studies/data/h100")
    parser.add_argument("--cache-dir", default=os.environ.get("MPSEARCH_CACHE_DIR"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--deadline-s", type=float, default=1e9, help="stop (resumably) after this many seconds")
    parser.add_argument("--only", nargs="*", help="ops: only these presets")
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    {"smoke": cmd_smoke, "compile": cmd_compile, "ops": cmd_ops, "networks": cmd_networks, "provenance": cmd_provenance}[args.phase](args)


if __name__ == "__main__":
    sys.exit(main())
