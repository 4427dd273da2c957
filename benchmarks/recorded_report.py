"""What the recorded H100 data says about mlp6: exhaustive Pareto fronts and a few comparisons.

From a recording (default ``mpsearch/data/recordings/h100/``, format in ``mpsearch/data/recordings/README.md``):

- the exhaustive latency-vs-capacity Pareto front of mlp6 for the menus {fp16, fp8_e4m3, int8} and
  {fp16, int8, int4}, from the end-to-end latency of all 729 configurations of each;
- uniform int8, int4 and fp8 against uniform fp16 (speed-up);
- the largest latency gap between two configurations of equal capacity;
- how far the sum of recorded per-op latencies is from the end-to-end latency (mean, max);

written to ``benchmarks/results/<recording>_recorded_report.md`` with a plot of both fronts.
Every latency here is replayed from the recording, i.e. measured on the recording's device.

    python benchmarks/recorded_report.py [--data mpsearch/data/recordings/h100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpsearch.backends.replay import default_data_root, load_recording, op_key
from mpsearch.errors import MpsearchError
from mpsearch.network import Network, preset
from mpsearch.search.hypervolume import hypervolume, reference_point
from mpsearch.space import SearchSpace, capacity

MENUS = {"fp8 menu": ("fp16", "fp8_e4m3", "int8"), "int4 menu": ("fp16", "int8", "int4")}
UNIFORM = ("int8", "int4", "fp8_e4m3")


@dataclass
class MenuResult:
    name: str
    menu: tuple[str, ...]
    table: pd.DataFrame  # one row per configuration: config, capacity, e2e_ms, p10/p90, sum_ms, rel_err, on_front
    missing_e2e: int
    front: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.front = self.table[self.table["on_front"]].sort_values("e2e_ms").reset_index(drop=True)


@dataclass
class Report:
    recording: Path
    provenance: dict[str, Any]
    network: Network
    menus: dict[str, MenuResult]
    speedups: pd.DataFrame
    gaps: pd.DataFrame
    sum_error: pd.DataFrame
    fronts: pd.DataFrame
    # menus left out: most of their configurations have no end-to-end recording -> (recorded, total)
    unreported: dict[str, tuple[int, int]] = field(default_factory=dict)


def configuration_table(recording, network: Network, menu: tuple[str, ...]) -> tuple[pd.DataFrame, int]:
    """Every configuration of ``network`` over ``menu``: capacity, end-to-end and summed per-op latency."""
    fp = network.fingerprint()
    rows = []
    for config in SearchSpace(network, menu).all_configs():
        whole = recording.networks.get((fp, config.key))
        ops = [recording.ops.get(op_key(op)) for op in network.ops(config.formats)]
        rows.append({
            "config": config.key,
            "capacity": capacity(network, config),
            "e2e_ms": whole.median_ms if whole else np.nan,
            "p10_ms": whole.p10_ms if whole else np.nan,
            "p90_ms": whole.p90_ms if whole else np.nan,
            "sum_ms": sum(t.median_ms for t in ops) if all(ops) else np.nan,
        })
    table = pd.DataFrame(rows)
    table["rel_err"] = (table["sum_ms"] - table["e2e_ms"]) / table["e2e_ms"]
    return table, int(table["e2e_ms"].isna().sum())


def pareto_mask(latency: pd.Series, cap: pd.Series) -> np.ndarray:
    """Non-dominated rows (latency minimised, capacity maximised); rows without a latency are out."""
    import moocore

    mask = np.zeros(len(latency), dtype=bool)
    known = latency.notna().to_numpy()
    if known.any():
        points = np.column_stack([latency[known].to_numpy(float), cap[known].to_numpy(float)])
        mask[known] = moocore.is_nondominated(points, maximise=[False, True])
    return mask


def compute(recording_path: Path, network: Network | None = None) -> Report:
    recording = load_recording(recording_path)
    network = network or preset("mlp6")
    menus, unreported = {}, {}
    for name, menu in MENUS.items():
        table, missing = configuration_table(recording, network, menu)
        if missing > len(table) / 2:  # a front over the few recorded configurations would mislead
            unreported[name] = (len(table) - missing, len(table))
            continue
        table["on_front"] = pareto_mask(table["e2e_ms"], table["capacity"])
        table["on_sum_front"] = pareto_mask(table["sum_ms"], table["capacity"])
        menus[name] = MenuResult(name, menu, table, missing)

    every = pd.concat([m.table for m in menus.values()]).drop_duplicates("config").set_index("config")
    n_layers = len(network.layers)

    def uniform(fmt: str) -> float:
        key = ",".join([fmt] * n_layers)
        return float(every.loc[key, "e2e_ms"]) if key in every.index else np.nan

    fp16 = uniform("fp16")
    speedups = pd.DataFrame(
        [{"format": f, "fp16_ms": fp16, "uniform_ms": uniform(f), "speedup": fp16 / uniform(f)} for f in UNIFORM]
    )

    gaps, errors, fronts = [], [], []
    for m in menus.values():
        known = m.table.dropna(subset=["e2e_ms"])
        directions = ["minimize", "maximize"]
        if len(known):
            ref = reference_point(known[["e2e_ms", "capacity"]].to_numpy(float), directions)
            hv = hypervolume(m.front[["e2e_ms", "capacity"]].to_numpy(float), ref, directions)
            fronts.append({"menu": m.name, "configs": len(known), "front_size": len(m.front),
                           "reference_point": f"({ref[0]:.4g} ms, {ref[1]:.0f})", "hypervolume": hv})
        t = m.table.dropna(subset=["e2e_ms"])
        spread = t.groupby("capacity")["e2e_ms"].agg(lambda s: s.max() - s.min())
        if len(spread):
            cap = spread.idxmax()
            group = t[t["capacity"] == cap]
            fast, slow = group.loc[group["e2e_ms"].idxmin()], group.loc[group["e2e_ms"].idxmax()]
            gaps.append({"menu": m.name, "capacity": int(cap), "fast_config": fast["config"], "fast_ms": fast["e2e_ms"],
                         "slow_config": slow["config"], "slow_ms": slow["e2e_ms"], "gap_ms": slow["e2e_ms"] - fast["e2e_ms"],
                         "ratio": slow["e2e_ms"] / fast["e2e_ms"]})
        both = m.table.dropna(subset=["e2e_ms", "sum_ms"])
        errors.append({
            "menu": m.name, "configs": len(both),
            "mean_abs_rel_err": both["rel_err"].abs().mean(), "max_abs_rel_err": both["rel_err"].abs().max(),
            "mean_rel_err": both["rel_err"].mean(),
            "worst_config": both.loc[both["rel_err"].abs().idxmax(), "config"] if len(both) else "",
            "front_agrees": bool((m.table["on_front"] == m.table["on_sum_front"]).all()),
            "front_size": int(m.table["on_front"].sum()), "sum_front_size": int(m.table["on_sum_front"].sum()),
        })
    return Report(recording.path, dict(recording.provenance), network, menus, speedups,
                  pd.DataFrame(gaps), pd.DataFrame(errors), pd.DataFrame(fronts), unreported)


# --- rendering ------------------------------------------------------------------------------------

def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub markdown table (pandas' to_markdown needs tabulate, which mpsearch does not depend on)."""
    formats = formats or {}
    cells = [[formats.get(c, "{}").format(v) if pd.notna(v) else "—" for c, v in row.items()] for _, row in frame.iterrows()]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (reports are committed; home paths are noise)."""
    root = default_data_root().parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def summary_lines(report: Report) -> list[str]:
    """The report's headline numbers as sentences (computed, so they cannot drift from the tables)."""
    lines = []
    sp = report.speedups.set_index("format")
    parts = [f"{f} {sp.loc[f, 'speedup']:.2f}×" for f in sp.index if pd.notna(sp.loc[f, "speedup"])]
    if parts:
        lines.append(f"Uniform formats vs uniform fp16 ({sp['fp16_ms'].iloc[0]:.3f} ms), speed-up: {', '.join(parts)}.")
    for _, g in report.gaps.iterrows():
        lines.append(f"{g['menu']}: at equal capacity ({g['capacity']}) latency differs by up to {g['gap_ms']:.3f} ms "
                     f"({g['ratio']:.2f}×): `{g['fast_config']}` vs `{g['slow_config']}`.")
    for _, e in report.sum_error.iterrows():
        direction = "under" if e["mean_rel_err"] < 0 else "over"
        agree = "the same front" if e["front_agrees"] else (
            f"a different front ({e['sum_front_size']} configurations vs {e['front_size']} end to end)")
        lines.append(f"{e['menu']}: the sum of per-op latencies {direction}estimates the end-to-end latency by "
                     f"{abs(e['mean_rel_err']):.1%} on average (mean |error| {e['mean_abs_rel_err']:.1%}, max "
                     f"{e['max_abs_rel_err']:.1%} at `{e['worst_config']}`), and gives {agree}.")
    return lines


def render_markdown(report: Report, plot_name: str | None) -> str:
    prov = report.provenance
    timing = prov.get("timing", {})
    out = [
        f"# mlp6 on the recorded {prov['device']}: exhaustive fronts and comparisons",
        "",
        f"Generated by `benchmarks/recorded_report.py` from the recording `{_shown(report.recording)}/`. Every latency below was **measured on {prov['device']}** "
        f"(sm_{prov['arch']}) by the CUTLASS backend and is replayed from that recording, not modelled.",
        "",
        f"- recorded {prov.get('date', '?')}; driver {prov.get('driver', '?')}, CUDA {prov.get('cuda', '?')}, "
        f"CUTLASS {prov.get('cutlass', '?')}, torch {prov.get('torch', '?')}, mpsearch {prov.get('mpsearch', '?')}",
        f"- timing: {', '.join(f'{k} {v}' for k, v in timing.items()) or '?'}",
        f"- network: {report.network.description} (fingerprint `{report.network.fingerprint()}`); "
        "capacity = Σ k × bits (mpsearch.space.capacity)",
    ]
    if prov.get("notes"):
        out.append(f"- recorder's notes: {prov['notes']}")
    for name, (recorded, total) in report.unreported.items():
        out.append(f"- **{name}: only {recorded} of {total} configurations are recorded end to end; not reported**")
    for m in report.menus.values():
        if m.missing_e2e:
            out.append(f"- **{m.name}: {m.missing_e2e} of {len(m.table)} configurations have no end-to-end "
                       "recording; they are left out of its front and comparisons**")
    if plot_name:
        out += ["", f"![fronts]({plot_name})"]
    out += ["", "## Summary", ""] + [f"- {line}" for line in summary_lines(report)]

    out += ["", "## Exhaustive fronts", "",
            "Hypervolume (latency minimised, capacity maximised) against the reference point "
            "`mpsearch.search.hypervolume.reference_point` fixes from all configurations of the menu.", "",
            markdown_table(report.fronts, {"hypervolume": "{:.4g}"})]
    out += ["", "## Uniform formats vs uniform fp16 (end to end)", "",
            markdown_table(report.speedups, {"fp16_ms": "{:.3f}", "uniform_ms": "{:.3f}", "speedup": "{:.2f}×"})]
    out += ["", "## Largest latency gap between two configurations of equal capacity", "",
            markdown_table(report.gaps, {"fast_ms": "{:.3f}", "slow_ms": "{:.3f}", "gap_ms": "{:.3f}", "ratio": "{:.2f}×"})]
    out += ["", "## Sum of per-op latencies vs end-to-end latency",
            "", "Relative error = (Σ recorded per-op medians − end-to-end median) / end-to-end median, over every "
            "configuration of the menu. `front_agrees`: the front computed from the sums selects exactly the "
            "same configurations as the end-to-end front.", "",
            markdown_table(report.sum_error, {"mean_abs_rel_err": "{:.2%}", "max_abs_rel_err": "{:.2%}", "mean_rel_err": "{:+.2%}"})]
    for m in report.menus.values():
        front = m.front[["config", "capacity", "e2e_ms", "p10_ms", "p90_ms", "sum_ms"]]
        out += ["", f"## Exhaustive Pareto front, {m.name} {{{', '.join(m.menu)}}}: "
                    f"{len(front)} of {int(m.table['e2e_ms'].notna().sum())} configurations", "",
                "Layer formats in order fc1..fc6; latency minimised, capacity maximised.", "",
                markdown_table(front, {"e2e_ms": "{:.3f}", "p10_ms": "{:.3f}", "p90_ms": "{:.3f}", "sum_ms": "{:.3f}"})]
    return "\n".join(out) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report.menus), figsize=(6 * len(report.menus), 4.5), squeeze=False)
    for ax, m in zip(axes[0], report.menus.values()):
        t = m.table.dropna(subset=["e2e_ms"])
        ax.scatter(t["e2e_ms"], t["capacity"], s=8, color="0.7", label=f"all {len(t)} configurations")
        ax.step(m.front["e2e_ms"], m.front["capacity"], where="post", color="C3", lw=1)
        ax.scatter(m.front["e2e_ms"], m.front["capacity"], s=22, color="C3", label=f"Pareto front ({len(m.front)})")
        # emulated int4 is ~40x slower than the rest: a log axis keeps both ends readable
        log = len(t) and t["e2e_ms"].max() > 10 * t["e2e_ms"].min()
        if log:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            lo, hi = t["e2e_ms"].min(), t["e2e_ms"].max()
            ticks = [v * 10**e for e in range(-2, 4) for v in (1, 2, 5) if lo * 0.75 <= v * 10**e <= hi * 1.1]
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("end-to-end latency (ms" + (", log scale)" if log else ")"))
        ax.set_ylabel("capacity (Σ k × bits)")
        ax.set_title(f"mlp6, {{{', '.join(m.menu)}}}")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"measured on {report.provenance['device']} (replayed from {report.recording.name})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_root() / "h100", help="the recording (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        report = compute(args.data)
    except MpsearchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report.recording.name}_recorded"
    plot_path = args.out / f"{stem}_fronts.png"
    plot(report, plot_path)
    md_path = args.out / f"{stem}_report.md"
    md_path.write_text(render_markdown(report, plot_path.name))
    print(f"wrote {md_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
