"""Render a `Document` as Markdown: the same sections, tables as pipe tables, plots as links
to the PNG files written beside it (`figures/NAME.png`)."""

from __future__ import annotations

from skindeep.report.document import Document, Plot, Table, Text, fmt

FIGURES = "figures"


def _cell(text: str) -> str:
    """Escape the pipe that would split a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _table(block: Table) -> str:
    lines = []
    if block.caption:
        lines += [f"*{block.caption}*", ""]
    lines.append("| " + " | ".join(_cell(c) for c in block.columns) + " |")
    lines.append("|" + "|".join("---" for _ in block.columns) + "|")
    for row in block.rows:
        cells = (_cell(fmt(row.get(c), block.digits)) for c in block.columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _block(block: Text | Table | Plot) -> str:
    if isinstance(block, Text):
        if block.kind == "code":
            return f"```\n{block.text}\n```"
        if block.kind == "verdict":
            return f"> **{block.text}**"
        return f"*{block.text}*" if block.kind == "note" else block.text
    if isinstance(block, Table):
        return _table(block)
    caption = f"\n\n*{block.caption}*" if block.caption else ""
    return f"![{block.name}]({FIGURES}/{block.name}.png){caption}"


def render_markdown(doc: Document) -> str:
    """The document as Markdown text."""
    parts = [f"# {doc.title}"]
    if doc.subtitle:
        parts.append(doc.subtitle)
    for sec in doc.sections:
        parts.append(f"## {sec.title}")
        parts.extend(_block(b) for b in sec.blocks if not isinstance(b, Table) or b.show)
    return "\n\n".join(parts) + "\n"
