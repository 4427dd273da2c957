"""Where an enumeration's time went: per trial, the measurement (warm-up, sampling) and the host's
share (the loop, the sampler, storage), read back from the study it wrote.

    python benchmarks/timing/enumerate_timing.py sqlite:///path/enumerate.db STUDY --out stem
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import optuna
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("storage")
    ap.add_argument("study")
    ap.add_argument("--out", required=True, help="output stem (.csv and .json)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    rows = []
    for t in done:
        timing = t.user_attrs["latency_extra"]["timing"]
        tel = timing.get("telemetry", {})
        rows.append({"trial": t.number, "config": t.user_attrs["config"], "median_ms": timing["median_ms"],
                     "n_samples": timing["n_samples"], "stop": timing["stop"], "ci95_rel_halfwidth": timing["ci95_rel_halfwidth"],
                     "warmup_s": timing["warmup"].get("seconds"), "timing_s": timing["seconds"], "measure_s": t.user_attrs["measure_s"],
                     "trial_s": (t.datetime_complete - t.datetime_start).total_seconds(),
                     "sm_mhz_median": tel.get("sm_mhz", {}).get("median"), "power_w_median": tel.get("power_w", {}).get("median"),
                     "temp_c_median": tel.get("temp_c", {}).get("median"), "start": t.datetime_start.isoformat()})
    df = pd.DataFrame(rows).sort_values("trial")
    starts = pd.to_datetime(df["start"])
    wall = (pd.Timestamp(max(t.datetime_complete for t in done)) - starts.min()).total_seconds()
    summary = {
        "device": done[0].user_attrs.get("latency_device") if done else None,
        "configurations_done": len(done), "trials_stored": len(study.trials), "space": 729,
        "wall_s_first_start_to_last_complete": round(wall, 1),
        "s_per_configuration": round(wall / max(1, len(done)), 3),
        "median_s": {k: round(float(df[k].median()), 4) for k in ("warmup_s", "timing_s", "measure_s", "trial_s")},
        "mean_s": {k: round(float(df[k].mean()), 4) for k in ("warmup_s", "timing_s", "measure_s", "trial_s")},
        "host_s_per_configuration": round(wall / max(1, len(done)) - float(df["measure_s"].mean()), 4),
        "stops": df["stop"].value_counts().to_dict(),
        "projected_s_for_729": round(wall / max(1, len(done)) * 729, 0),
    }
    df.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
