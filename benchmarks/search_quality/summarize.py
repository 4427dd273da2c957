"""Table and plot of a search-quality run (the CSV written by run.py).

    python benchmarks/search_quality/summarize.py benchmarks/results/search_quality_X.csv
    # writes search_quality_X.md (table) and search_quality_X.png (plot) beside it
    python benchmarks/search_quality/summarize.py --merge OUT.csv A.csv B.csv   # runs made apart

Table: median (over seeds) of the hypervolume found as a fraction of the true front's at each
budget, with the worst seed; median number of distinct measured configurations to reach 95 %, 99 %
and 100 % (a seed that never reaches it within the budget counts as "never"; the median is "> budget"
when more than half never do); median seconds per proposal; proposals that repeated a measured
configuration (answered from the cache, not counted in the budget).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

BUDGETS = (10, 20, 40, 80, 160)
TARGETS = (0.95, 0.99, 1.0)
ORDER = ("layerwise", "gp", "tpe", "nsga2", "random")


def read(path: Path) -> tuple[dict[str, str], pd.DataFrame]:
    meta = {}
    with path.open() as fh:
        for line in fh:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            meta[key] = value.strip()
    return meta, pd.read_csv(path, comment="#")


def reach(curve: pd.Series, target: float) -> float:
    """First budget at which the fraction reaches ``target`` (inf if never)."""
    hit = curve[curve >= target - 1e-12]
    return float(hit.index[0]) if len(hit) else np.inf


def summary(df: pd.DataFrame, budget: int) -> pd.DataFrame:
    rows = []
    names = [n for n in ORDER if n in set(df["sampler"])] + sorted(set(df["sampler"]) - set(ORDER))
    for name in names:
        g = df[df["sampler"] == name]
        curves = {seed: s.set_index("measured")["hv_fraction"] for seed, s in g.groupby("seed")}
        row = {"sampler": name, "seeds": len(curves)}
        for b in BUDGETS:
            if b > budget:
                continue
            at = [c[c.index <= b].iloc[-1] if (c.index <= b).any() else np.nan for c in curves.values()]
            short = sum(c.index.max() < b for c in curves.values())
            row[f"hv@{b}"] = f"{np.nanmedian(at):.4f} (min {np.nanmin(at):.4f})" + (f" [{short} short]" if short else "")
        for t in TARGETS:
            firsts = np.array([reach(c, t) for c in curves.values()])
            med = np.median(firsts)
            hit = int(np.isfinite(firsts).sum())
            row[f"trials to {t:.0%}"] = (f"{med:.0f}" if np.isfinite(med) else f"> {budget}") + f" ({hit}/{len(firsts)} seeds)"
        last = g.sort_values("measured").groupby("seed").tail(1)
        row["s/proposal"] = f"{np.median(last['suggest_s'] / last['asks']):.3f}"
        row["repeats"] = int((last["asks"] - last["measured"]).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def stop_rule_check(df: pd.DataFrame) -> str:
    """Where `--target-hv 0.99` would have stopped each layerwise run (model >= 95 % sure), and the
    true fraction there."""
    out = []
    for seed, g in df[df["confidence99"].notna()].groupby("seed"):
        g = g.sort_values("measured")
        hit = g[g["confidence99"] >= 0.95]
        if len(hit):
            out.append((seed, int(hit["measured"].iloc[0]), float(hit["hv_fraction"].iloc[0])))
        else:
            out.append((seed, None, None))
    stopped = [o for o in out if o[1] is not None]
    if not stopped:
        return f"Stop rule (--target-hv 0.99): the model never reached 95 % confidence in {len(out)} runs."
    fr = np.array([o[2] for o in stopped])
    n = np.array([o[1] for o in stopped])
    return (f"Stop rule check (`--target-hv 0.99`, stop when the model is >= 95 % sure): {len(stopped)} of {len(out)} "
            f"layerwise runs would have stopped, after a median of {np.median(n):.0f} measurements "
            f"(range {n.min()}-{n.max()}); the true fraction there: median {np.median(fr):.4f}, min {fr.min():.4f}; "
            f"{int((fr >= 0.99).sum())} of {len(stopped)} had really reached 99 %.")


def markdown(table: pd.DataFrame) -> str:
    # pandas' to_markdown needs the tabulate package; a pipe table is one line per row.
    cols = list(table.columns)
    rows = [" | ".join(cols), " | ".join("---" for _ in cols)]
    rows += [" | ".join(str(v) for v in r) for r in table.itertuples(index=False)]
    return "\n".join(f"| {r} |" for r in rows)


def plot(df: pd.DataFrame, meta: dict[str, str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [n for n in ORDER if n in set(df["sampler"])]
    for name in names:
        g = df[df["sampler"] == name]
        piv = g.pivot(index="measured", columns="seed", values="hv_fraction").ffill()
        gap = (1.0 - piv).clip(lower=1e-5)
        med = gap.median(axis=1)
        line, = ax.plot(med.index, med.values, label=f"{name} ({piv.shape[1]} seeds)")
        ax.fill_between(med.index, gap.quantile(0.25, axis=1), gap.quantile(0.75, axis=1), color=line.get_color(), alpha=0.15)
    ax.axhline(0.01, color="grey", ls="--", lw=0.8)
    ax.text(1.02, 0.01, "99 %", color="grey", va="center", transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distinct configurations measured (budget)")
    ax.set_ylabel("1 - HV(found) / HV(true front)   (median, IQR band)")
    ax.set_title(f"{meta.get('network')} over {meta.get('menu')} ({meta.get('space_size')} configs)\n"
                 f"{meta.get('source')}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def merge(paths: list[Path], out: Path) -> None:
    """One CSV from runs of the same benchmark made in several processes (e.g. GP apart, as it is
    slow); refuses runs whose ground truth or reference point differ."""
    metas, frames = zip(*(read(p) for p in paths))
    for p, m in zip(paths[1:], metas[1:]):
        for key in ("network", "menu", "source", "reference", "true_hv"):
            if m.get(key) != metas[0].get(key):
                raise SystemExit(f"{p}: {key} is {m.get(key)!r}, not {metas[0].get(key)!r} as in {paths[0]}: not one benchmark")
    with out.open("w") as fh:
        for k, v in metas[0].items():
            fh.write(f"# {k}: {v}\n")
        pd.concat(frames).to_csv(fh, index=False)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "--merge":
        # summarize.py --merge OUT.csv A.csv B.csv ...
        merge([Path(a) for a in argv[2:]], Path(argv[1]))
        argv = [argv[1]]
    if len(argv) != 1:
        print(__doc__)
        return 2
    path = Path(argv[0])
    meta, df = read(path)
    budget = int(meta.get("budget", df["measured"].max()))
    table = summary(df, budget)
    lines = [f"# Search quality: {meta.get('network')} over {meta.get('menu')}", "",
             f"- latency: {meta.get('source')}; ground truth: {meta.get('ground_truth')}",
             f"- space: {meta.get('space_size')} configurations; true front: {meta.get('true_front_points')} points, "
             f"hypervolume {float(meta.get('true_hv', 'nan')):.6g} at reference point {meta.get('reference')} "
             "(latency ms, capacity), the same for every run",
             "- budget = distinct measured configurations; a repeated proposal is answered from the cache and not counted",
             "- objectives: latency (minimised, from the ground truth), capacity (maximised, exact)",
             f"- an oracle that measures only true-front configurations, largest hypervolume gain first, reaches "
             f"95 / 99 / 100 % after {meta.get('oracle_trials')} configurations (no sampler can do much better)"]
    if "additive_fit_rms" in meta:
        lines.append(
            f"- the best layer-additive model (least squares on all configurations) leaves an RMS residual of "
            f"{float(meta['additive_fit_rms']):.2%} of the mean latency; the front it predicts holds "
            f"{float(meta['additive_fit_front_hv']):.4f} of the true hypervolume (what a model-guided search gets "
            "without measuring near-front configurations to find the ones the model cannot predict)")
    lines += ["",
             markdown(table), ""]
    if "confidence99" in df and df["confidence99"].notna().any():
        lines += stop_rule_check(df), ""
    md = path.with_suffix(".md")
    md.write_text("\n".join(lines))
    plot(df, meta, path.with_suffix(".png"))
    print("\n".join(lines))
    print(f"wrote {md} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
