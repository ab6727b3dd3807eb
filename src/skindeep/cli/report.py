"""`skindeep report DIR`: render what DIR holds (a study, or one model's audit, ablation and
retention results) as one self-contained HTML file, a Markdown summary, JSON and parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skindeep.cli._common import console, out_folder


def report_command(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Folder written by `study run`, `audit`, `ablate` or `retention`",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the report (default: DIR)", callback=out_folder
        ),
    ] = None,
) -> None:
    """Render a results folder: report.html (plots embedded, no network), report.md with
    figures/*.png, report.json and tables/*.parquet with every number."""
    from skindeep.report.build import build_document
    from skindeep.report.write import write_report

    doc = build_document(folder)
    files = write_report(doc, out if out is not None else folder)
    if doc.numbers.get("verdict"):
        console.print(doc.numbers["verdict"], style="bold", soft_wrap=True, markup=False)
    console.print(f"report ({doc.kind}): {files.html}", soft_wrap=True)
    console.print(f"also: {files.markdown}, {files.json}, {len(files.tables)} parquet tables")
