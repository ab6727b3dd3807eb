"""A report as data: sections of text, tables and plots, rendered to HTML and Markdown.

Builders (a study, an audit, a dose-response or a retention folder) produce one `Document`;
`html.py` and `markdown.py` render it and `write.py` writes it with every table as JSON and
parquet. Tables keep raw values (floats, None) so the files carry full precision; only the
renderers round them. Plots are rendered to PNG bytes once, when they are added.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from matplotlib.figure import Figure

TextKind = Literal["p", "verdict", "note", "code"]


@dataclass(frozen=True)
class Text:
    """A paragraph; `verdict` is the highlighted plain-words conclusion, `code` is preformatted."""

    text: str
    kind: TextKind = "p"


@dataclass(frozen=True)
class Table:
    """Rows of raw values under named columns; `name` is the file stem of its JSON/parquet."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    caption: str = ""
    digits: int = 3
    """Significant digits of floats in the rendered table (files keep full precision)."""
    show: bool = True
    """False: a data table written to JSON/parquet only (too long to read on the page)."""


@dataclass(frozen=True)
class Plot:
    """A figure as PNG bytes, with its pixel size and a caption that says how to read it."""

    name: str
    png: bytes
    width: int
    height: int
    caption: str = ""

    @classmethod
    def from_figure(cls, name: str, fig: Figure, caption: str = "", dpi: int = 110) -> Plot:
        """Render a matplotlib figure (Agg canvas) to PNG; the figure is not kept."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        width, height = (round(v * dpi) for v in fig.get_size_inches())
        return cls(name=name, png=buf.getvalue(), width=width, height=height, caption=caption)


Block = Text | Table | Plot


@dataclass
class Section:
    """A titled part of the report."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        """Append blocks; returns the section for chaining."""
        self.blocks.extend(blocks)
        return self


@dataclass
class Document:
    """The whole report: a title, a one-line subtitle, sections, and the numbers it stands on."""

    title: str
    kind: str
    """What was rendered: study, audit, dose, retention (or several, joined by '+')."""
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    """Headline numbers (JSON-ready) written to report.json beside the tables."""

    def section(self, title: str) -> Section:
        """Start a new section at the end of the document."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def tables(self) -> list[Table]:
        """Every table of the document, in order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def plots(self) -> list[Plot]:
        """Every plot of the document, in order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, Plot)]


def fmt(value: Any, digits: int = 3) -> str:
    """A cell for a rendered table: floats to `digits` significant digits, None/NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 10**digits or abs(value) < 1e-3:
            return f"{value:.{digits}g}"
        if abs(value) >= 1:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)
