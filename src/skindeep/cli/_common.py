"""Shared pieces of the CLI: the console and a progress-bar factory."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

#: Wide enough for the behaviour tables when output goes to a file or CI log.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def progress() -> Progress:
    """A rich progress bar for long steps (training, generation, activation collection)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
