"""Does a recorded mlp6 ratio repeat in another session, and how much of its pass-to-pass spread is the SM clock?

Compares the passes of a recording's ``paired.csv`` (each configuration timed against one reference,
with the SM clock of each pass) with new passes of some of its configurations timed the same way
in a later session (``record.py networks --reference ... --configs FILE --first-pass N``):

- clock slope: within each configuration of the recording, the log ratio against the SM clock,
  pooled by the number of int8 layers (an int8 layer's latency and the reference's scale
  differently with the clock under the power cap);
- prediction: each new pass predicted from the recording, as the recorded multi-pass value (what
  replay serves) or as the recorded value at the pass's own clock (the slope above); median and
  RMS error;
- ranking: the configurations ordered by the recording, by the new passes, and by all passes
  pooled; rank correlation between sessions, raw and at one clock (the recording's median clock).

    python benchmarks/timing/clock_repeat.py benchmarks/results/h200_recording/paired.csv \\
        benchmarks/results/h200_session5/paired.csv --out benchmarks/results/h200_session5/clock_repeat
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _read(path: Path) -> pd.DataFrame:
    d = pd.read_csv(path)
    d = d[d.network == "mlp6"].copy()
    d["log_ratio"] = np.log(d.ratio)
    d["int8_layers"] = d.config.str.split(",").apply(lambda fs: fs.count("int8"))
    return d


def clock_slopes(recorded: pd.DataFrame) -> dict[int, float]:
    """d log(ratio) / d MHz within a configuration, by its number of int8 layers (least squares on
    values centred per configuration; a count with too few passes takes the next lower count's)."""
    centred = recorded.assign(
        y=recorded.log_ratio - recorded.groupby("config").log_ratio.transform("mean"),
        x=recorded.sm_mhz - recorded.groupby("config").sm_mhz.transform("mean"))
    slopes: dict[int, float] = {}
    for n in range(int(recorded.int8_layers.max()) + 1):
        g = centred[centred.int8_layers == n]
        if len(g) >= 20 and g.x.abs().sum() > 0:
            slopes[n] = float((g.x * g.y).sum() / (g.x ** 2).sum())
        else:
            slopes[n] = slopes.get(n - 1, 0.0)
    return slopes


def compare(recorded: pd.DataFrame, new: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    slopes = clock_slopes(recorded)
    clock = float(recorded.sm_mhz.median())
    rows = []
    for config, passes in new.groupby("config"):
        old = recorded[recorded.config == config]
        if old.empty:
            continue
        s = slopes[int(old.int8_layers.iloc[0])]
        served = float(np.median(old.log_ratio))  # what replay serves, as a log ratio
        at_clock = float(np.median(old.log_ratio - s * (old.sm_mhz - clock)))
        rows.append({
            "config": config, "int8_layers": int(old.int8_layers.iloc[0]),
            "recorded_passes": len(old), "new_passes": len(passes),
            "recorded_ratio": float(np.exp(served)), "new_ratio": float(np.exp(np.median(passes.log_ratio))),
            "pooled_ratio": float(np.exp(np.median(np.r_[old.log_ratio, passes.log_ratio]))),
            "recorded_ratio_at_clock": float(np.exp(at_clock)),
            "new_ratio_at_clock": float(np.exp(np.median(passes.log_ratio - s * (passes.sm_mhz - clock)))),
            "error_served": float(np.median(passes.log_ratio - served)),
            "error_at_pass_clock": float(np.median(passes.log_ratio - (at_clock + s * (passes.sm_mhz - clock)))),
            "recorded_spread": float(old.log_ratio.std()), "new_spread": float(passes.log_ratio.std()),
        })
    t = pd.DataFrame(rows).sort_values("recorded_ratio").reset_index(drop=True)

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x))))

    summary = {
        "configurations": len(t), "recorded_median_sm_mhz": clock,
        "new_sm_mhz": {q: float(new.sm_mhz.quantile(p)) for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))},
        "slope_percent_per_100mhz_by_int8_layers": {n: round(1e4 * s, 3) for n, s in slopes.items()},
        "prediction_error_percent": {
            "served_value": {"median_abs": 100 * float(t.error_served.abs().median()), "rms": 100 * rms(t.error_served)},
            "at_the_pass_clock": {"median_abs": 100 * float(t.error_at_pass_clock.abs().median()),
                                  "rms": 100 * rms(t.error_at_pass_clock)}},
        "pass_spread_percent_median": {"recorded": 100 * float(t.recorded_spread.median()),
                                       "new": 100 * float(t.new_spread.median())},
        "rank_correlation_between_sessions": {
            "raw": float(spearmanr(t.recorded_ratio, t.new_ratio)[0]),
            "at_one_clock": float(spearmanr(t.recorded_ratio_at_clock, t.new_ratio_at_clock)[0])},
        "fastest": {"recorded": t.loc[t.recorded_ratio.idxmin(), "config"],
                    "new": t.loc[t.new_ratio.idxmin(), "config"],
                    "pooled": t.loc[t.pooled_ratio.idxmin(), "config"]},
    }
    return summary, t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recorded", type=Path, help="the recording's paired.csv")
    p.add_argument("new", type=Path, help="paired.csv of the new passes")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.csv")
    args = p.parse_args()
    summary, table = compare(_read(args.recorded), _read(args.new))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    table.round(5).to_csv(args.out.with_suffix(".csv"), index=False)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
