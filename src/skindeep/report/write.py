"""Write a `Document`: report.html (self-contained), report.md with figures/*.png, report.json
(headline numbers and every table) and one parquet file per table under tables/.

Every file goes through a temporary sibling and an atomic rename; report.html is written last,
so a folder holding it holds a complete report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skindeep.artifacts import atomic_write_json, atomic_write_text, json_ready, staged_file
from skindeep.report.document import Document, Table, Text
from skindeep.report.html import render_html
from skindeep.report.markdown import FIGURES, render_markdown

HTML, MARKDOWN, JSON, TABLES = "report.html", "report.md", "report.json", "tables"


@dataclass(frozen=True)
class ReportFiles:
    """Paths of everything `write_report` wrote."""

    html: Path
    markdown: Path
    json: Path
    tables: tuple[Path, ...]
    figures: tuple[Path, ...]


def _column(values: list[Any]) -> list[Any]:
    """One parquet column: lists become text, and a column mixing text and numbers is text."""
    values = [fmt_list(v) if isinstance(v, (list, tuple)) else json_ready(v) for v in values]
    if any(isinstance(v, str) for v in values):
        return [None if v is None else str(v) for v in values]
    if any(isinstance(v, float) for v in values):
        return [None if v is None else float(v) for v in values]
    return values


def fmt_list(values: list | tuple) -> str:
    """A list cell as text, e.g. '[-0.5, 0.25]'."""
    return "[" + ", ".join("null" if v is None else repr(v) for v in values) + "]"


def write_parquet(table: Table, path: Path) -> Path:
    """A table as parquet, one typed column per table column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {c: _column([row.get(c) for row in table.rows]) for c in table.columns}
    with staged_file(path) as tmp:
        pq.write_table(pa.table(data), tmp)
    return path


def report_json(doc: Document) -> dict[str, Any]:
    """Everything the report states as numbers and words, JSON-ready."""
    texts = [b for s in doc.sections for b in s.blocks if isinstance(b, Text) and b.kind != "code"]
    return json_ready(
        {
            "kind": f"skindeep.report.{doc.kind}",
            "title": doc.title,
            "subtitle": doc.subtitle,
            "numbers": doc.numbers,
            "verdict": [t.text for t in texts if t.kind == "verdict"],
            "tables": {
                t.name: {"caption": t.caption, "columns": list(t.columns), "rows": list(t.rows)}
                for t in doc.tables()
            },
            "figures": [p.name for p in doc.plots()],
        }
    )


def write_report(doc: Document, out: Path) -> ReportFiles:
    """Write every file of the report into `out` (created if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for plot in doc.plots():
        path = out / FIGURES / f"{plot.name}.png"
        with staged_file(path) as tmp:
            tmp.write_bytes(plot.png)
        figures.append(path)
    tables = tuple(write_parquet(t, out / TABLES / f"{t.name}.parquet") for t in doc.tables())
    atomic_write_json(out / JSON, report_json(doc))
    atomic_write_text(out / MARKDOWN, render_markdown(doc))
    atomic_write_text(out / HTML, render_html(doc))
    return ReportFiles(out / HTML, out / MARKDOWN, out / JSON, tables, tuple(figures))
