"""Shared pieces of the CLI: the console, progress bars, and the checks every command reuses.

Command modules stay light: at module level they import only typer, enums, pathlib and this
module; the library (torch, transformers, peft, pydantic option classes) is imported inside the
command, so `skindeep --help`, `skindeep COMMAND --help` and usage errors answer at once.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError
    from rich.progress import Progress

    from skindeep.errors import ConfigError

#: Wide enough for the behaviour tables when output goes to a file or CI log.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

Model = TypeVar("Model", bound="BaseModel")


def progress(eta: bool = False) -> Progress:
    """A rich progress bar for long steps (training, generation, activation collection);
    `eta` adds the estimated time remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if eta:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False)


# ---- output locations: checked when the flags are parsed, before any work -----------------------


def _writable_location(path: Path, flag: str, kind: str) -> None:
    """Raise BadParameter unless `path` can be created (or reused) as a `kind` ('folder'/'file')."""
    path = path.expanduser()
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise typer.BadParameter(f"{path} is a file, not a folder", param_hint=f"'{flag}'")
        if kind == "file" and path.is_dir():
            raise typer.BadParameter(f"{path} is a folder, not a file", param_hint=f"'{flag}'")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():  # the nearest existing folder decides whether we can write
        parent = parent.parent
    if not parent.is_dir():
        raise typer.BadParameter(
            f"{path} lies under {parent}, which is a file", param_hint=f"'{flag}'"
        )
    try:  # os.access says yes to root on read-only mounts; an unnamed temp file tells the truth
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise typer.BadParameter(
            f"{path}: cannot write in {parent} ({exc.strerror or exc})", param_hint=f"'{flag}'"
        ) from None


def _flag(param: Any) -> str:
    """The long name of a click parameter (`--out` rather than `-o`)."""
    return max(getattr(param, "opts", None) or ["--out"], key=len)


def out_folder(ctx: Any, param: Any, value: Path | None) -> Path | None:
    """Option callback: `value` can be used (or created) as an output folder.

    Use as `typer.Option(callback=out_folder)`: an existing file, a folder under a file or a
    folder that cannot be written is a usage error naming the flag, before any work starts.
    """
    if value is not None:
        _writable_location(Path(value), _flag(param), "folder")
    return value


def out_file(ctx: Any, param: Any, value: Path | None) -> Path | None:
    """Option callback: `value` can be written as a file (see `out_folder`)."""
    if value is not None:
        _writable_location(Path(value), _flag(param), "file")
    return value


# ---- option values ---------------------------------------------------------------------------


def flag_name(field: str) -> str:
    """The flag a user types for an option field: `batch_size` -> `--batch-size`."""
    return "--" + field.replace("_", "-")


def _allowed(error: Mapping[str, Any]) -> str:
    """What pydantic says is allowed, without its 'Input should be' / 'Value error,' lead-in."""
    message = str(error.get("msg", "invalid value"))
    for lead in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(lead)
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    return message


def option_error(
    exc: ValidationError, flags: Mapping[str, str] | None = None, what: str = "options"
) -> ConfigError:
    """One line per pydantic error, naming the flag as typed, the value and what is allowed.

    `flags` maps a field name to its flag where they differ (`{"ns": "--n", "fmt": "--format"}`);
    any other field `batch_size` is reported as `--batch-size`. Errors of a whole-model
    validator carry no field: in their message the field names listed in `flags` become flags.
    """
    from skindeep.errors import ConfigError

    flags = flags or {}
    parts = []
    for error in exc.errors(include_url=False):
        names = [part for part in error.get("loc", ()) if isinstance(part, str)]
        if not names:  # a whole-model check: its message names fields; say the flags instead
            message = _allowed(error)
            for name, flag in flags.items():
                message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, message)
            parts.append(message)
            continue
        flag = flags.get(names[-1]) or flags.get(".".join(names)) or flag_name(names[-1])
        value = error.get("input")
        if isinstance(value, (list, tuple)):  # as typed: --n 0,5
            value = ",".join(str(v) for v in value)
        shown = "" if isinstance(value, Mapping) else f" {value}"
        parts.append(f"{flag}{shown}: {_allowed(error)}")
    return ConfigError("; ".join(parts) if parts else f"invalid {what}: {exc}")


def validated(cls: type[Model], flags: Mapping[str, str] | None = None, **values: Any) -> Model:
    """`cls(**values)`, a pydantic option class; a ValidationError becomes one ConfigError line."""
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        raise option_error(exc, flags) from None


def default_of(cls: Any, field: str) -> Any:
    """The default of a pydantic option class's field: CLI options read it, never restate it."""
    return cls.model_fields[field].get_default(call_default_factory=True)


def finite(value: float | None, flag: str) -> float | None:
    """`value` unless it is nan or infinite (then a ConfigError naming `flag`)."""
    from skindeep.errors import ConfigError

    if value is not None and not math.isfinite(value):
        raise ConfigError(f"{flag} {value}: expected a finite number")
    return value


# ---- models and data -------------------------------------------------------------------------


def is_organism(model: str) -> bool:
    """Whether `model` is a folder of a skindeep model organism (it holds organism.json)."""
    return (Path(model).expanduser() / "organism.json").is_file()


def check_model_source(model: str, flag: str = "--model") -> None:
    """A local-looking model path must exist and be a model folder; hub ids pass through.

    Raised before anything is loaded, so a typo in a path says "does not exist" rather than
    a later, misleading complaint about data options.
    """
    from skindeep.errors import ConfigError

    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    if not looks_local and model.count("/") <= 1:
        return  # a hub id (org/name) or an organism name: the loader decides
    if not path.exists():
        raise ConfigError(f"{flag} {model}: does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"{flag} {model}: is not a model folder (no config.json in it)")


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
