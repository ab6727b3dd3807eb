"""Reports of results: files on disk, figures and terminal tables."""

from skindeep.report.audit_files import AuditFiles, direction_tensors, write_audit
from skindeep.report.plots import profile_figure, save_png, spectra_figure
from skindeep.report.summary import audit_summary_table

__all__ = [
    "AuditFiles",
    "audit_summary_table",
    "direction_tensors",
    "profile_figure",
    "save_png",
    "spectra_figure",
    "write_audit",
]
