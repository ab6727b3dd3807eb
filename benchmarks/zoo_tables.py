"""Tables shared by the zoo benchmarks: one row per build, and each organism over build seeds;
and their shared `--language` flag."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from skindeep.organisms.language import LANGUAGES

TEXT_COLUMNS = ("organism", "recipe", "arch")
"""Left-aligned columns; every other column is a number, right-aligned."""


def print_rows(rows: list[dict[str, Any]], title: str, width: int = 200) -> None:
    """The rows as a rich table, floats to three decimals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="left" if key in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=width).print(table)


def print_seed_summary(
    rows: list[dict[str, Any]],
    summarised: Sequence[str],
    listed: Sequence[str] = (),
    width: int = 220,
) -> None:
    """Per organism: its builds, the `listed` columns per build, mean [min, max] of `summarised`."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    table = Table(title="over build seeds: mean \\[min, max]")
    for key in ("organism", "builds", *listed, *summarised):
        table.add_column(key, justify="left" if key == "organism" else "right")
    for name in sorted({r["organism"] for r in rows}):
        mine = sorted((r for r in rows if r["organism"] == name), key=lambda r: r["build_seed"])
        cells = []
        for key in summarised:
            v = np.array([r[key] for r in mine], dtype=float)
            spread = f" [{v.min():.3f}, {v.max():.3f}]" if len(v) > 1 else ""
            cells.append(f"{v.mean():.3f}{spread}")
        seeds = ",".join(str(r["build_seed"]) for r in mine)
        per_build = [",".join(str(r[key]) for r in mine) for key in listed]
        table.add_row(name, f"{len(mine)} ({seeds})", *per_build, *cells)
    Console(width=width).print(table)


def add_language_argument(parser: argparse.ArgumentParser) -> None:
    """The zoo benchmarks' `--language` flag: an organism language, None for the zoo spec's."""
    parser.add_argument(
        "--language", choices=LANGUAGES, default=None, help="organism language (default: the zoo's)"
    )
