"""Render a `Document` as one self-contained HTML file: inline CSS, plots as base64 PNG.

Nothing is loaded from the network and no script runs, so the file opens anywhere (a browser
with no connection, a mail attachment, a paper's supplementary material).
"""

from __future__ import annotations

import base64
import re
from html import escape

from skindeep.report.document import Document, Plot, Section, Table, Text, fmt

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
  margin: 0 auto; max-width: 1180px; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
.subtitle { color: #57606a; margin: 0 0 16px; }
nav { font-size: 13px; color: #57606a; margin-bottom: 8px; }
nav a { color: #0969da; text-decoration: none; margin-right: 14px; }
.verdict { background: #fff8c5; border-left: 5px solid #bf8700; padding: 12px 16px;
  font-size: 16px; margin: 12px 0; }
.note { color: #57606a; font-size: 13px; }
pre { background: #f6f8fa; padding: 10px 12px; overflow-x: auto; font-size: 12px; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #eaeef2; text-align: right;
  white-space: nowrap; }
th { background: #f6f8fa; border-bottom: 1px solid #d0d7de; position: sticky; top: 0; }
td:first-child, th:first-child, td.t { text-align: left; }
tr:nth-child(even) td { background: #fbfcfd; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: 13px;
  padding-bottom: 4px; }
figure { margin: 12px 0 22px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 13px; margin-top: 4px; max-width: 900px; }
"""


def anchor(title: str) -> str:
    """A stable id for a section title (lowercase words joined by '-')."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def _text(block: Text) -> str:
    if block.kind == "code":
        return f"<pre>{escape(block.text)}</pre>"
    cls = f' class="{block.kind}"' if block.kind != "p" else ""
    return f"<p{cls}>{escape(block.text)}</p>"


def _cell(value: object, digits: int) -> str:
    """A table cell; text is left-aligned, numbers right-aligned."""
    cls = ' class="t"' if isinstance(value, str) else ""
    return f"<td{cls}>{escape(fmt(value, digits))}</td>"


def _table(block: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in block.columns)
    body = "".join(
        "<tr>" + "".join(_cell(row.get(c), block.digits) for c in block.columns) + "</tr>"
        for row in block.rows
    )
    caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
    return (
        f'<div class="table-wrap"><table data-table="{escape(block.name)}">{caption}'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _plot(block: Plot) -> str:
    data = base64.b64encode(block.png).decode("ascii")
    caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
    return (
        f'<figure data-plot="{escape(block.name)}"><img alt="{escape(block.name)}" '
        f'width="{block.width}" height="{block.height}" src="data:image/png;base64,{data}">'
        f"{caption}</figure>"
    )


def _section(sec: Section) -> str:
    parts = [f'<section id="{anchor(sec.title)}"><h2>{escape(sec.title)}</h2>']
    for block in sec.blocks:
        if isinstance(block, Text):
            parts.append(_text(block))
        elif isinstance(block, Table):
            if block.show:
                parts.append(_table(block))
        else:
            parts.append(_plot(block))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(doc: Document) -> str:
    """The whole document as an HTML page (no external resource, no script)."""
    nav = " ".join(f'<a href="#{anchor(s.title)}">{escape(s.title)}</a>' for s in doc.sections)
    body = "\n".join(_section(s) for s in doc.sections)
    subtitle = f'<p class="subtitle">{escape(doc.subtitle)}</p>' if doc.subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(doc.title)}</title><style>{_CSS}</style></head>\n"
        f"<body><header><h1>{escape(doc.title)}</h1>{subtitle}<nav>{nav}</nav></header>\n"
        f"{body}\n</body></html>\n"
    )
