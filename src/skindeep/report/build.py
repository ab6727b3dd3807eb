"""`skindeep report DIR`: detect what DIR holds and render it.

A folder with study.json is a study; otherwise its audit.json, dose.json and retention.json
(any of them) are one model's results. Anything else is a clear error naming the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skindeep.errors import SkindeepError
from skindeep.report.document import Document
from skindeep.report.model_report import folder_name, folder_sections
from skindeep.report.write import ReportFiles, write_report

STUDY = "study.json"
MODEL_FILES = {"audit": "audit.json", "dose": "dose.json", "retention": "retention.json"}


class ReportError(SkindeepError):
    """A folder that holds nothing to report, or a results file that cannot be read."""


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable JSON results file ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def detect(folder: Path) -> str:
    """'study' or the '+'-joined kinds of single-model results in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder")
    if (folder / STUDY).is_file():
        return "study"
    kinds = [k for k, name in MODEL_FILES.items() if (folder / name).is_file()]
    if not kinds:
        expected = ", ".join([STUDY, *MODEL_FILES.values()])
        raise ReportError(f"{folder}: holds none of {expected}; nothing to report")
    return "+".join(kinds)


def build_document(folder: Path) -> Document:
    """The report document of whatever `folder` holds."""
    folder = Path(folder)
    kind = detect(folder)
    if kind == "study":
        from pydantic import ValidationError

        from skindeep.report.study import study_document
        from skindeep.study.result import StudyResult

        try:
            result = StudyResult.model_validate(_read(folder / STUDY))
        except ValidationError as exc:
            raise ReportError(f"{folder / STUDY}: not a valid study.json:\n{exc}") from exc
        return study_document(result, folder)
    found = {k: _read(folder / MODEL_FILES[k]) for k in kind.split("+")}
    try:
        sections = folder_sections(folder, found)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ReportError(f"{folder}: a results file lacks an expected field ({exc!r})") from exc
    name = folder_name(folder, found)
    doc = Document(f"skindeep report: {name}", kind, f"results in {folder}")
    doc.sections = sections
    doc.numbers = {k: v.get("headline") for k, v in found.items() if "headline" in v}
    return doc


def render(folder: Path, out: Path | None = None) -> ReportFiles:
    """Build the report of `folder` and write it into `out` (default: `folder` itself)."""
    return write_report(build_document(folder), Path(out) if out is not None else Path(folder))
