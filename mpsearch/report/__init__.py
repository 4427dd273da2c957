"""Reports of stored studies: compute first (:mod:`.compute`: pandas tables and numbers), render
second (:mod:`.render`: matplotlib PNG, plotly HTML, rich table, CSV/JSON files)."""

from mpsearch.report.compute import (
    ExhaustiveComparison,
    StudyRef,
    StudyReport,
    compute_report,
    find_exhaustive,
    list_studies,
    open_study,
    parse_study_ref,
)

__all__ = [
    "ExhaustiveComparison", "StudyRef", "StudyReport", "compute_report", "find_exhaustive", "list_studies",
    "open_study", "parse_study_ref",
]
