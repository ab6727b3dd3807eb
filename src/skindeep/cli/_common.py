"""Shared pieces of the CLI: the console and a progress-bar factory."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

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


def is_organism(model: str) -> bool:
    """Whether `model` is a folder of a skindeep model organism (it holds organism.json)."""
    return (Path(model).expanduser() / "organism.json").is_file()


def require_real_data(model: str, options: Mapping[str, str]) -> None:
    """Organism-language defaults are meaningless for a real model: ask for files instead.

    `options` maps each data option's flag (e.g. "--harmful") to its value; a value naming the
    organism language (`organism` or `organism:...`) on a model that is not an organism is a
    ConfigError, raised before any model is loaded.
    """
    from skindeep.errors import ConfigError

    if is_organism(model):
        return
    organism = [flag for flag, value in options.items() if value.split(":")[0] == "organism"]
    if organism:
        raise ConfigError(
            f"{model} is not a skindeep organism, but {', '.join(organism)} "
            f"{'uses' if len(organism) == 1 else 'use'} the organism language (the default); "
            "pass prompt files for a real model (e.g. AdvBench and Alpaca)"
        )
