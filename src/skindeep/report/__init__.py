"""Reports of results: files on disk, figures and terminal tables."""

from skindeep.report.audit_files import (
    AuditFiles,
    AuditFilesError,
    SavedSubspaces,
    direction_tensors,
    read_subspaces,
    write_audit,
)
from skindeep.report.compare import (
    RunComparison,
    SubspaceMismatchError,
    compare_runs,
    comparison_json,
    comparison_table,
    write_comparison,
)
from skindeep.report.plots import profile_figure, save_png, spectra_figure
from skindeep.report.summary import audit_summary_table

__all__ = [
    "AuditFiles",
    "AuditFilesError",
    "RunComparison",
    "SavedSubspaces",
    "SubspaceMismatchError",
    "audit_summary_table",
    "compare_runs",
    "comparison_json",
    "comparison_table",
    "direction_tensors",
    "profile_figure",
    "read_subspaces",
    "save_png",
    "spectra_figure",
    "write_audit",
    "write_comparison",
]
