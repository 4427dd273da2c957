"""Draw a computed report: PNG and HTML Pareto plots, the per-layer format heat-map, CSV/JSON files and
the terminal summary. matplotlib, plotly and rich are imported inside the functions that use them,
so ``import mpsearch`` (and ``mpsearch --help``) stays light, and the tables, CSV and JSON need none
of them: without rich the summary is plain text, without matplotlib/plotly the plots are skipped
with a one-line hint naming the ``plot`` extra.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from mpsearch.formats import get_format
from mpsearch.report.compute import SOURCE_WORDS, StudyReport

# Colours per format, from high to low precision: the heat-map and the legends agree.
FORMAT_COLOURS = {"fp16": "#4c72b0", "bf16": "#64b5cd", "fp8_e4m3": "#55a868", "int8": "#dd8452", "int4": "#c44e52"}
STUDY_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def short(fmt: str) -> str:
    """``fp8_e4m3`` → ``fp8`` for tables and cells; other names are short already."""
    return "fp8" if fmt == "fp8_e4m3" else fmt


def num(value: float) -> str:
    """Integers in full with thousands separators (capacity), other values to 5 significant digits."""
    return f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.5g}"


def axis_label(report: StudyReport, objective: str) -> str:
    direction = report.directions[report.objectives.index(objective)]
    better = "lower" if direction == "minimize" else "higher"
    if objective == report.latency_objective and objective == "latency":
        return f"latency (ms, {report.latency_origin}; {better} is better)"
    if objective == "capacity":
        return f"capacity (Σ k × bits; {better} is better)"
    return f"{objective} ({better} is better)"


def _y_of(report: StudyReport, y: str | None) -> str:
    y = y or report.default_y()
    if y not in report.objectives:
        from mpsearch.errors import InvalidSpecError

        raise InvalidSpecError(f"--y {y!r} is not an objective of study {report.name}; use one of {', '.join(report.objectives)}")
    return y


def _hv_text(report: StudyReport) -> str:
    if report.hypervolume is None:
        return "hypervolume: no complete trial yet"
    text = f"hypervolume = {report.hypervolume:.6g}"
    if report.exhaustive is not None:
        text += f" = {report.exhaustive.percent:.1f}% of the exhaustive front"
    return text


def _staircase(report: StudyReport, x: str, y: str) -> bool:
    # The front joins into an attainment staircase only when the plot shows every objective.
    return len(report.objectives) == 2 and {x, y} == set(report.objectives)


def _trial_count(done: Any) -> str:
    distinct = done["config"].nunique()
    return f"{len(done)}" if distinct == len(done) else f"{distinct} configurations in {len(done)} trials"


def _title(report: StudyReport) -> str:
    net = report.spec.network.get("name")
    what = report.name if net == report.name else f"{report.name}: {net}"
    return f"{what} over {{{', '.join(map(short, report.spec.menu))}}}"


def _plot_study(ax: Any, report: StudyReport, x: str, y: str, colour: str, label: str, *, faint: bool,
                marker: str = "o", size: float = 36) -> None:
    done = report.trials[report.trials["state"] == "COMPLETE"]
    off = done[~done["on_front"]]
    # In a comparison an exhaustive study is the reference front; its hundreds of other points
    # would only bury the searches' trials.
    if not (faint and report.spec.exhaustive):
        ax.scatter(off[x], off[y], s=14, color="0.55" if not faint else colour, alpha=0.25 if faint else 0.5,
                   linewidths=0, label=None if faint else f"trials ({_trial_count(done)})")
    front = report.front.sort_values(x)
    ax.scatter(front[x], front[y], s=size, marker=marker, color=colour, edgecolors="black", linewidths=0.5, zorder=3,
               label=f"{label} ({len(front)} configurations)")
    if _staircase(report, x, y) and len(front) > 1:
        ydir = report.directions[report.objectives.index(y)]
        ax.plot(front[x], front[y], drawstyle="steps-post" if ydir == "maximize" else "steps-pre",
                color=colour, linewidth=1.2, zorder=2)


def _empty_corner(report: StudyReport, y: str) -> str:
    """Where the legend hides no point: the corner of the ideal (fast and good), which a trade-off leaves empty."""
    return "upper left" if report.directions[report.objectives.index(y)] == "maximize" else "lower left"


def _comparison_title(reports: Sequence[StudyReport]) -> str:
    import textwrap

    return textwrap.fill("Pareto fronts compared: " + " vs ".join(r.name for r in reports), 110)


def render_png(report: StudyReport, path: Path, y: str | None = None) -> Path:
    """Latency vs ``y`` (capacity by default): every complete trial, the front highlighted."""
    from matplotlib.figure import Figure

    x, y = report.latency_objective, _y_of(report, y)
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    _plot_study(ax, report, x, y, STUDY_COLOURS[0], "Pareto front", faint=False)
    ax.set_xlabel(axis_label(report, x))
    ax.set_ylabel(axis_label(report, y))
    ax.set_title(f"{_title(report)}\n{_hv_text(report)}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc=_empty_corner(report, y), fontsize=8)
    fig.savefig(path, dpi=130)
    return path


def _hover(report: StudyReport, frame: Any, x: str) -> list[str]:
    per_line = 6
    texts = []
    for _, row in frame.iterrows():
        cells = [f"{layer}={short(row[layer])}" for layer in report.layers]
        lines = [" ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
        values = "<br>".join(f"{o} = {row[o]:.6g}" for o in report.objectives)
        origin = f"{row['latency_source']} {row['device']}".strip() or "origin not recorded"
        texts.append(f"<b>{report.name} trial {row['trial']}</b><br>{values}<br>{'<br>'.join(lines)}<br>latency: {origin}")
    return texts


def _plotly_study(fig: Any, report: StudyReport, x: str, y: str, colour: str, label: str, *, faint: bool) -> None:
    import plotly.graph_objects as go

    done = report.trials[report.trials["state"] == "COMPLETE"]
    off = done[~done["on_front"]]
    fig.add_trace(go.Scatter(
        x=off[x], y=off[y], mode="markers", name=f"{label}: trials ({_trial_count(done)})",
        marker={"size": 6, "color": colour if faint else "grey", "opacity": 0.3 if faint else 0.5},
        hovertext=_hover(report, off, x), hoverinfo="text",
    ))
    front = report.front.sort_values(x)
    shape = "hv" if report.directions[report.objectives.index(y)] == "maximize" else "vh"
    fig.add_trace(go.Scatter(
        x=front[x], y=front[y], name=f"{label}: front ({len(front)})",
        mode="lines+markers" if _staircase(report, x, y) else "markers",
        line={"shape": shape, "color": colour, "width": 1.5},
        marker={"size": 9, "color": colour, "line": {"width": 1, "color": "black"}},
        hovertext=_hover(report, front, x), hoverinfo="text",
    ))


def render_html(report: StudyReport, path: Path, y: str | None = None, plotlyjs: str | bool = True) -> Path:
    """Interactive Pareto plot; hovering a point shows its per-layer formats and latency origin.

    ``plotlyjs=True`` embeds plotly.js (a self-contained file of ~4 MB that opens offline);
    ``"cdn"`` links it instead (small file, needs the network to open)."""
    import plotly.graph_objects as go

    x, y = report.latency_objective, _y_of(report, y)
    fig = go.Figure()
    _plotly_study(fig, report, x, y, STUDY_COLOURS[0], report.name, faint=False)
    fig.update_layout(
        title=f"{_title(report)}<br><sup>{_hv_text(report)}</sup>",
        xaxis_title=axis_label(report, x), yaxis_title=axis_label(report, y), template="plotly_white",
    )
    fig.write_html(path, include_plotlyjs=plotlyjs)
    return path


def render_heatmap(report: StudyReport, path: Path, y: str | None = None) -> Path | None:
    """One row per front configuration (fastest at the top), one column per layer, coloured by format."""
    if report.front.empty:
        return None
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    x, y = report.latency_objective, _y_of(report, y)
    menu = sorted(report.spec.menu, key=lambda f: (-get_format(f).bits, f))
    front = report.front.sort_values(x)
    codes = np.array([[menu.index(f) for f in row] for row in front[report.layers].itertuples(index=False)])
    cmap = ListedColormap([FORMAT_COLOURS.get(f, "#999999") for f in menu])
    rows, cols = codes.shape
    fig = Figure(figsize=(min(max(7.0, 4 + 0.55 * cols), 30), min(1.6 + 0.32 * rows, 40)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(menu) - 0.5, aspect="auto", interpolation="nearest")
    if rows * cols <= 2000:
        for (i, j), code in np.ndenumerate(codes):
            ax.text(j, i, short(menu[code]), ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(cols), report.layers, rotation=90 if cols > 12 else 0, fontsize=8)
    ax.set_yticks(range(rows), [f"#{t}  {lx:.4g} ms  {y}={num(ly)}" for t, lx, ly in zip(front["trial"], front[x], front[y])],
                  fontsize=7)
    ax.set_title(f"{report.name}: formats of the {rows} Pareto-optimal configurations", fontsize=10)
    ax.legend(handles=[Patch(color=FORMAT_COLOURS.get(f, "#999999"), label=short(f)) for f in menu],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.savefig(path, dpi=130)
    return path


def render_comparison_png(reports: Sequence[StudyReport], path: Path, y: str | None = None) -> Path:
    """Several studies' trials (faint) and fronts in one latency-vs-``y`` plot."""
    from matplotlib.figure import Figure

    x = reports[0].latency_objective
    y = _y_of(reports[0], y)
    for r in reports:
        _y_of(r, y)
    fig = Figure(figsize=(9, 6 + 0.18 * len(reports)), layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(reports):
        # Fronts of several studies share points: later ones get smaller, different markers, so
        # a point found by all of them shows every study's marker nested in the others.
        _plot_study(ax, r, x, y, STUDY_COLOURS[i % len(STUDY_COLOURS)],
                    _study_label(r, with_origin=_shared_origin(reports) is None), faint=True,
                    marker="osD^v<>p"[i % 8], size=max(70 * 0.62 ** i, 8))
    ax.set_xlabel(_comparison_xlabel(reports, x))
    ax.set_ylabel(axis_label(reports[0], y))
    ax.set_title(_comparison_title(reports), fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", fontsize=7)  # long labels: below the axes, hiding no point
    fig.savefig(path, dpi=130)
    return path


def render_comparison_html(reports: Sequence[StudyReport], path: Path, y: str | None = None, plotlyjs: str | bool = True) -> Path:
    import plotly.graph_objects as go

    x = reports[0].latency_objective
    y = _y_of(reports[0], y)
    fig = go.Figure()
    for i, r in enumerate(reports):
        _plotly_study(fig, r, x, y, STUDY_COLOURS[i % len(STUDY_COLOURS)],
                      _study_label(r, with_origin=_shared_origin(reports) is None), faint=True)
    fig.update_layout(title=_comparison_title(reports).replace("\n", "<br>"),
                      xaxis_title=_comparison_xlabel(reports, x), yaxis_title=axis_label(reports[0], y),
                      template="plotly_white")
    fig.write_html(path, include_plotlyjs=plotlyjs)
    return path


def _study_label(r: StudyReport, with_origin: bool = True) -> str:
    hv = f", {r.exhaustive.percent:.1f}% of exhaustive HV" if r.exhaustive else ""
    sampler = "exhaustive" if r.spec.exhaustive else (r.spec.sampler or {}).get("name", "?")
    origin = f"; {r.latency_origin}" if with_origin else ""
    return f"{r.name} [{','.join(map(short, r.spec.menu))}; {sampler}{origin}{hv}]"


def _shared_origin(reports: Sequence[StudyReport]) -> str | None:
    """The latency origin when every study shares it (said once, on the axis), else None (per label)."""
    origins = {r.latency_origin for r in reports}
    return origins.pop() if len(origins) == 1 else None


def _comparison_xlabel(reports: Sequence[StudyReport], x: str) -> str:
    if x != "latency":
        return x
    shared = _shared_origin(reports)
    return f"latency (ms, {shared})" if shared else "latency (ms)"


def summary_table(report: StudyReport, max_layer_columns: int = 12) -> tuple[str, Any, str]:
    """(title, table, caption) of the terminal summary: the front as a pandas DataFrame of display
    strings, one column per objective and per layer (one "formats" column past ``max_layer_columns``
    layers)."""
    import pandas as pd

    done = report.trials[report.trials["state"] == "COMPLETE"]
    title = (f"{report.name}: Pareto front, {len(report.front)} of {done['config'].nunique()} distinct configurations "
             f"({len(report.trials)} trials)")
    # One study normally has one latency origin (the caption says it); a column only when they differ.
    origins = report.front["latency_source"].astype(str) + " " + report.front["device"].astype(str)
    per_row_origin = origins.nunique() > 1
    wide = len(report.layers) > max_layer_columns
    heads = {o: f"{o} {'↓' if d == 'minimize' else '↑'}" + (" (ms)" if o == "latency" else "")
             for o, d in zip(report.objectives, report.directions)}
    rows = []
    for _, row in report.front.iterrows():
        out = {"trial": str(row["trial"]), **{heads[o]: num(row[o]) for o in report.objectives}}
        if wide:
            out["formats (layer order)"] = ",".join(short(row[l]) for l in report.layers)
        else:
            out.update({l: short(row[l]) for l in report.layers})
        if per_row_origin:
            out["latency from"] = f"{SOURCE_WORDS.get(row['latency_source'], row['latency_source'])} {row['device']}"
        rows.append(out)
    columns = ["trial", *heads.values(), *(["formats (layer order)"] if wide else report.layers),
               *(["latency from"] if per_row_origin else [])]
    return title, pd.DataFrame(rows, columns=columns), f"latency {report.latency_origin}"


def summary_lines(report: StudyReport) -> list[str]:
    """The lines under the summary table: hypervolume, the exhaustive comparison, notes."""
    lines = []
    if report.reference_point is not None:
        lines.append(f"hypervolume = {report.hypervolume:.6g} against reference point "
                     f"{[round(v, 6) for v in report.reference_point]}")
    else:
        lines.append(_hv_text(report))
    if report.exhaustive is not None:
        e = report.exhaustive
        lines.append(f"hypervolume = {e.percent:.1f}% of the exhaustive front (study {e.study.label}: "
                     f"{e.n_configs} configurations, front of {e.front_size}; both against its reference point)")
    lines.extend(f"note: {n}" for n in report.notes)
    return lines


def summary_renderables(report: StudyReport, max_layer_columns: int = 12) -> list[Any]:
    """The terminal summary for rich (``rich`` must be installed): a table of the front, then the
    hypervolume lines."""
    from rich.table import Table

    title, frame, caption = summary_table(report, max_layer_columns)
    table = Table(title=title, caption=caption, show_lines=False)
    for col in frame.columns:
        table.add_column(col, justify="right" if col == "trial" or col.endswith(("↓", "↑", "(ms)")) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*row)
    return [table, *summary_lines(report)]


def summary_text(report: StudyReport, max_layer_columns: int = 12) -> str:
    """The terminal summary as plain text (no rich needed): title, table, caption, hypervolume lines."""
    title, frame, caption = summary_table(report, max_layer_columns)
    table = frame.to_string(index=False) if not frame.empty else "(no configuration on the front)"
    return "\n".join([title, table, caption, *summary_lines(report)]) + "\n"


def has_rich() -> bool:
    """Whether rich (the ``report`` extra) can be imported: tables are drawn with it, else as plain text."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def print_summary(report: StudyReport, console: Any = None) -> None:
    """Print the summary: on ``console`` (a rich Console) if given, else with rich when it is
    installed, else as plain text on stdout."""
    if console is None and not has_rich():
        print(summary_text(report), end="")
        return
    if console is None:
        from rich.console import Console

        console = Console()
    for item in summary_renderables(report):
        console.print(item)


PLOT_EXTRA_HINT = "pip install 'mpsearch[plot]'"


def missing_plot_packages() -> list[str]:
    """The plotting packages (the ``plot`` extra: matplotlib, plotly) that cannot be imported here."""
    missing = []
    for name in ("matplotlib", "plotly"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def plot_hint(missing: Sequence[str]) -> str:
    """One line: which plots are skipped because ``missing`` packages are not installed, and the fix."""
    return f"plots skipped: {' and '.join(missing)} not installed; for pareto.png/.html: {PLOT_EXTRA_HINT}"


def json_safe(value: Any) -> Any:
    """NaN and infinities (a hypervolume of nothing) as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_report(report: StudyReport, out: Path, *, y: str | None = None, plotlyjs: str | bool = True,
                 hint: Any = None) -> list[Path]:
    """The report directory: trials.csv/json, front.csv, summary.json and summary.txt always (core
    dependencies only); pareto.png, the heat-map and pareto.html when matplotlib and plotly (the
    ``plot`` extra) are installed. Without them the plots are skipped and ``hint`` (default: a print
    to stderr) is called once with a line naming the extra. Returns the files written."""
    import sys

    out.mkdir(parents=True, exist_ok=True)
    written = []
    report.trials.to_csv(out / "trials.csv", index=False)
    report.trials.to_json(out / "trials.json", orient="records", indent=1)
    report.front.to_csv(out / "front.csv", index=False)
    (out / "summary.json").write_text(json.dumps(json_safe(report.summary()), indent=1) + "\n")
    if has_rich():
        from rich.console import Console

        console = Console(record=True, width=160, file=io.StringIO())
        print_summary(report, console)
        (out / "summary.txt").write_text(console.export_text())
    else:
        (out / "summary.txt").write_text(summary_text(report))
    written += [out / n for n in ("trials.csv", "trials.json", "front.csv", "summary.json", "summary.txt")]
    missing = missing_plot_packages()
    if missing:
        (hint or (lambda line: print(line, file=sys.stderr)))(plot_hint(missing))
        return written
    written += [render_png(report, out / "pareto.png", y), render_html(report, out / "pareto.html", y, plotlyjs)]
    heat = render_heatmap(report, out / "formats_heatmap.png", y)
    if heat:
        written.append(heat)
    return written
