"""``mpsearch report``: the Pareto front of stored studies as a table, plots, CSV/JSON and hypervolume."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  mpsearch report mlp6-h100                       # reports/mlp6-h100/: pareto.png/.html, heat-map, CSV, JSON
  mpsearch report mlp6-tpe mlp6-nsga --out reports/samplers   # two studies, one overlaid plot
  mpsearch report mlp6-tpe --compare mlp6-a100@sqlite:///a100.db --y capacity
  mpsearch report --list                          # the studies in studies/*.db
  mpsearch report NAME --storage postgresql://user@db/mpsearch --exhaustive mlp6-all

Files written (in --out, default reports/NAME/): pareto.png, pareto.html (hover shows the per-layer
formats), formats_heatmap.png, trials.csv and trials.json (every trial), front.csv, summary.json,
summary.txt. With several studies: one sub-folder each, plus compare.png and compare.html.

optuna-dashboard: `pip install optuna-dashboard`, then `mpsearch report NAME --open-dashboard` (or
`optuna-dashboard sqlite:///studies/NAME.db`); the objectives appear under their names (latency, ...).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="the Pareto front of stored studies: table, plots, CSV/JSON, hypervolume",
        description="Report stored studies: the Pareto-optimal configurations (latency, every objective,\n"
                    "per-layer formats, where each latency came from), plots, CSV/JSON of all trials, and the\n"
                    "front's hypervolume (also as a % of the exhaustive front's when an exhaustive study of\n"
                    "the same space exists: `mpsearch enumerate`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = p.add_argument("names", nargs="*", metavar="NAME[@STORAGE]",
                           help="studies to report; several are overlaid in one plot (default storage: "
                                "sqlite:///studies/NAME.db)")
    names.complete = "study"  # type: ignore[attr-defined]  # read by `mpsearch completion`
    p.add_argument("--storage", metavar="URL",
                   help="storage holding the studies (sqlite:///f.db, journal:f.log, postgresql://..., redis://...)"
                   ).complete = "storage"  # type: ignore[attr-defined]
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="report folder (default reports/NAME/, or reports/compare-A-B/ for several)"
                   ).complete = "dir"  # type: ignore[attr-defined]
    p.add_argument("--compare", metavar="NAME[@STORAGE]", action="append", default=[],
                   help="also overlay this study's front in the comparison plot (repeatable)"
                   ).complete = "study"  # type: ignore[attr-defined]
    group = p.add_mutually_exclusive_group()
    group.add_argument("--exhaustive", metavar="NAME[@STORAGE]",
                       help="the exhaustive study to compare the hypervolume with (default: found automatically "
                            "in the same storage, then in studies/*.db)").complete = "study"  # type: ignore[attr-defined]
    group.add_argument("--no-exhaustive", action="store_true", help="do not look for an exhaustive study")
    p.add_argument("--y", metavar="OBJECTIVE", help="objective on the y axis (default: capacity, else the second objective)")
    p.add_argument("--html-js", choices=("inline", "cdn"), default="inline",
                   help="embed plotly.js in the HTML (inline: opens offline, ~4 MB) or link it (cdn: small)")
    p.add_argument("--no-files", action="store_true", help="print the summary only; write no report folder")
    p.add_argument("--list", action="store_true", help="list the studies in --storage (default: studies/*.db) and exit")
    p.add_argument("--open-dashboard", action="store_true",
                   help="after the report, serve the study in optuna-dashboard (needs `pip install optuna-dashboard`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mpsearch.errors import InvalidSpecError
    from mpsearch.report import compute_report, list_studies, parse_study_ref
    from mpsearch.validation import check_output_folder
    from mpsearch.report.compute import local_storages
    from mpsearch.report.render import (
        print_summary,
        render_comparison_html,
        render_comparison_png,
        write_report,
    )

    console = Console()
    if args.list:
        urls = [args.storage] if args.storage else local_storages()
        if not urls:
            console.print("no studies: studies/*.db holds none; give --storage URL")
            return 0
        _print_frame(console, list_studies(urls), "studies")
        return 0
    if not args.names:
        raise InvalidSpecError("mpsearch report needs a study NAME (see `mpsearch report --list` for the stored ones)")

    refs = [parse_study_ref(n, args.storage) for n in args.names]
    extra = [parse_study_ref(n, args.storage) for n in args.compare]
    exhaustive = parse_study_ref(args.exhaustive, args.storage) if args.exhaustive else not args.no_exhaustive
    reports = [compute_report(r, exhaustive=exhaustive) for r in refs]
    overlay = reports + [compute_report(r, exhaustive=exhaustive) for r in extra]

    several = len(overlay) > 1
    out = args.out or Path("reports") / ("compare-" + "-".join(r.name for r in overlay) if several else refs[0].name)
    if not args.no_files:
        check_output_folder(out)
    plotlyjs = True if args.html_js == "inline" else "cdn"
    for report in reports:
        print_summary(report, console)
        if not args.no_files:
            folder = out / report.name if len(reports) > 1 else out
            write_report(report, folder, y=args.y, plotlyjs=plotlyjs)
            console.print(f"report of {report.name} written to {folder}/")
    if several and not args.no_files:
        out.mkdir(parents=True, exist_ok=True)
        render_comparison_png(overlay, out / "compare.png", args.y)
        render_comparison_html(overlay, out / "compare.html", args.y, plotlyjs)
        console.print(f"comparison of {', '.join(r.name for r in overlay)} written to {out}/compare.png and compare.html")
    if args.open_dashboard:
        open_dashboard(refs[0].name, refs[0].storage)
    return 0


def _print_frame(console, frame, title: str) -> None:  # noqa: ANN001
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def open_dashboard(name: str, storage_url: str) -> None:
    """Serve the storage in optuna-dashboard, with the study's objectives named (blocks until ^C)."""
    from mpsearch.errors import UnsupportedConfigError
    from mpsearch.report.compute import StudyRef, open_study

    try:
        import optuna_dashboard
    except ImportError:
        raise UnsupportedConfigError(
            f"optuna-dashboard is not installed: `pip install optuna-dashboard`, then run `optuna-dashboard {storage_url}`"
        ) from None
    open_study(StudyRef(name, storage_url))  # a one-line error for a missing or foreign study
    print(f"serving {storage_url} at http://127.0.0.1:8080/ (Ctrl-C to stop)")
    optuna_dashboard.run_server(storage_url, host="127.0.0.1", port=8080)
