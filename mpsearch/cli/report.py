"""``mpsearch report``: the Pareto front of stored studies as a table, plots, CSV/JSON and hypervolume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpsearch.cli.output import human_output, print_json

EPILOG = """\
examples:
  mpsearch report mlp6-h100                       # reports/mlp6-h100/: pareto.png/.html, heat-map, CSV, JSON
  mpsearch report mlp6-tpe mlp6-nsga --out reports/samplers   # two studies, one overlaid plot
  mpsearch report mlp6-tpe --compare mlp6-a100@sqlite:///a100.db --y capacity
  mpsearch report --list                          # the studies in studies/ (*.db and *.log)
  mpsearch report mlp6 --json --no-files          # the summary and front as JSON on stdout
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
                                "studies/NAME.db or studies/NAME.log, whichever holds it)")
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
    p.add_argument("--list", action="store_true",
                   help="list the studies in --storage (default: studies/*.db and studies/*.log) and exit")
    p.add_argument("--json", action="store_true",
                   help="print each study's summary and Pareto front (ties grouped) as JSON on stdout; the files "
                        "are still written unless --no-files, and the human-readable lines go to stderr")
    p.add_argument("--open-dashboard", action="store_true",
                   help="after the report, serve the study in optuna-dashboard (needs `pip install optuna-dashboard`)")
    p.set_defaults(func=run)


def _ref(text: str, storage: str | None):  # noqa: ANN202
    """A study reference; a bare NAME is looked for where `mpsearch search` puts it (.db or .log)."""
    from mpsearch.api import study_storage
    from mpsearch.report import parse_study_ref

    ref = parse_study_ref(text, storage)
    if "@" in text or storage:
        return ref
    return type(ref)(ref.name, study_storage(ref.name))


def run(args: argparse.Namespace) -> int:
    from mpsearch.errors import InvalidSpecError
    from mpsearch.report import compute_report, list_studies
    from mpsearch.validation import check_output_folder

    if args.list:
        from mpsearch.api.setup import local_storages

        urls = [args.storage] if args.storage else local_storages()
        frame = list_studies(urls)
        if args.json:
            print(frame.to_json(orient="records"))
        elif not urls:
            print("no studies: studies/ holds none; give --storage URL")
        else:
            _print_frame(frame, "studies")
        return 0
    if not args.names:
        raise InvalidSpecError("mpsearch report needs a study NAME (see `mpsearch report --list` for the stored ones)")

    refs = [_ref(n, args.storage) for n in args.names]
    extra = [_ref(n, args.storage) for n in args.compare]
    exhaustive = _ref(args.exhaustive, args.storage) if args.exhaustive else not args.no_exhaustive
    reports = [compute_report(r, exhaustive=exhaustive) for r in refs]
    overlay = reports + [compute_report(r, exhaustive=exhaustive) for r in extra]

    several = len(overlay) > 1
    out = args.out or Path("reports") / ("compare-" + "-".join(r.name for r in overlay) if several else refs[0].name)
    if not args.no_files:
        check_output_folder(out)
    with human_output(args.json):
        _write(args, reports, overlay, out)
    if args.json:
        print_json([_report_document(r) for r in reports])
    if args.open_dashboard:
        open_dashboard(refs[0].name, refs[0].storage)
    return 0


def _write(args: argparse.Namespace, reports: list, overlay: list, out: Path) -> None:
    """Print each summary (unless --json) and write the report folders (unless --no-files)."""
    several = len(overlay) > 1
    plotlyjs = True if args.html_js == "inline" else "cdn"
    for report in reports:
        if not args.json:
            from mpsearch.report.render import print_summary

            print_summary(report)
        if not args.no_files:
            from mpsearch.report.render import write_report

            folder = out / report.name if len(reports) > 1 else out
            write_report(report, folder, y=args.y, plotlyjs=plotlyjs)
            print(f"report of {report.name} written to {folder}/")
    if several and not args.no_files:
        from mpsearch.report.render import missing_plot_packages, plot_hint, render_comparison_html, render_comparison_png

        missing = missing_plot_packages()
        if missing:
            print(plot_hint(missing).replace("pareto.png/.html", "compare.png/.html"), file=sys.stderr)
            return
        out.mkdir(parents=True, exist_ok=True)
        render_comparison_png(overlay, out / "compare.png", args.y)
        render_comparison_html(overlay, out / "compare.html", args.y, plotlyjs)
        print(f"comparison of {', '.join(r.name for r in overlay)} written to {out}/compare.png and compare.html")


def _report_document(report) -> dict:  # noqa: ANN001
    """A study's report as JSON: its summary and its front, tied configurations grouped."""
    import json

    from mpsearch.api.result import group_ties
    from mpsearch.report.render import json_safe

    front = group_ties(report.front, report.objectives)
    return {**json_safe(report.summary()), "front": json.loads(front.to_json(orient="records"))}


def _print_frame(frame, title: str) -> None:  # noqa: ANN001
    """A table on the terminal: rich's where it is installed, pandas' plain text otherwise."""
    from mpsearch.report.render import has_rich

    if not has_rich():
        print(title)
        print(frame.to_string(index=False) if len(frame) else "(none)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()

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
