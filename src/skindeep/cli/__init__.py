"""The `skindeep` command: one small module per command group, errors printed without tracebacks.

Importing this package (and `skindeep --help`, `skindeep COMMAND --help`, any usage error) loads
no torch, transformers or peft: command modules import only typer, enums, pathlib and
`skindeep.cli._common` at module level, and the library inside the command function
(tests/test_cli_startup.py holds every registered command to this). To add a command, write
`cli/NAME.py` that way and register it below with one line.

`main` is the one entry point (`skindeep` and `python -m skindeep`): usage errors look like
click's (usage line, the option's name, exit 2) with typer's vendored click or click itself;
a SkindeepError, a pydantic ValidationError or an OSError naming a file is one `error:` line
and exit 2; nan or inf in any float option is a usage error; Ctrl-C exits 130 and says how to
resume (every long step caches what it finished).
"""

from __future__ import annotations

import math
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

import typer

from skindeep.cli._common import console
from skindeep.cli.ablate import ablate_command
from skindeep.cli.audit import audit as audit_command
from skindeep.cli.audit import compare_command
from skindeep.cli.demo import demo_command
from skindeep.cli.model import app as model_app
from skindeep.cli.organisms import app as organisms_app
from skindeep.cli.rank import calibrate_command, rank_audit_command
from skindeep.cli.refusal import refusal
from skindeep.cli.report import report_command
from skindeep.cli.retention import retention
from skindeep.cli.study import app as study_app

app = typer.Typer(
    name="skindeep",
    help="How deep is a model's safety alignment? Refusal geometry, ablation and retention.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(organisms_app, name="organisms")
app.add_typer(model_app, name="model")
app.add_typer(study_app, name="study")
app.command()(retention)
app.command("audit")(audit_command)
app.command("audit-compare")(compare_command)
app.command()(refusal)
app.command("ablate")(ablate_command)
app.command("report")(report_command)
app.command("rank-audit")(rank_audit_command)
app.command("calibrate")(calibrate_command)
app.command("demo")(demo_command)

INTERRUPTED = (
    "interrupted: finished steps are kept (cached or written); run the same command again to resume"
)


def _quiet_libraries() -> None:
    """Keep transformers' per-file progress bars and notices out of the command's output.

    Set through the environment, which transformers and huggingface_hub read when a command
    first imports them; importing transformers here would cost `--help` seconds.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (e.g. tests calling main in-process)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """The exception class `name` of typer's vendored click and of click itself (if loaded)."""
    found = []
    for module in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        loaded = sys.modules.get(module)
        cls = getattr(loaded, name, None) if loaded else None
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def _finite_floats(command: Any) -> None:
    """Make nan and inf a usage error for every float option of `command` and its subcommands.

    Checked on the text as typed, before typer's range checks (which would otherwise report
    `--alpha nan` as "should be greater than or equal to 0").
    """
    for sub in getattr(command, "commands", {}).values():
        _finite_floats(sub)
    for param in getattr(command, "params", ()):
        if _takes_floats(param):
            param.process_value = _finite_first(param, param.process_value)


def _takes_floats(param: Any) -> bool:
    """Whether a typer (or click) parameter converts its value to float."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        annotation = descriptor.annotation
        return annotation is float or float in typing.get_args(annotation)
    return "float" in str(getattr(getattr(param, "type", None), "name", ""))


def _finite_first(param: Any, process: Any) -> Any:
    """`param.process_value` that first rejects values reading as nan or inf."""

    def process_value(ctx: Any, value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else (value,):
            try:
                number = float(item)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                raise typer.BadParameter(
                    f"{item} is not allowed: expected a finite number", ctx=ctx, param=param
                )
        return process(ctx, value)

    return process_value


def _error(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(2)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point: run the app; expected failures are one line and exit code 2 (130: Ctrl-C)."""
    from skindeep.errors import SkindeepError

    command = typer.main.get_command(app)
    _finite_floats(command)
    _quiet_libraries()
    try:
        code = command.main(args=args, standalone_mode=False)
    except SkindeepError as exc:
        _error(str(exc))
    except KeyboardInterrupt:
        code = 130
    except _click_classes("ClickException") as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except _click_classes("Exit") as exc:
        code = getattr(exc, "exit_code", 0)
    except _click_classes("Abort"):
        code = 1
    except Exception as exc:
        _expected(exc)
        raise
    if code == 130:  # typer turns Ctrl-C into Exit(130) before it reaches us
        console.print(f"[yellow]{INTERRUPTED}[/]")
    sys.exit(code if isinstance(code, int) else 0)


def _expected(exc: Exception) -> None:
    """A pydantic ValidationError or an OSError about a file: one `error:` line (else return)."""
    from skindeep.cli._common import option_error

    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        _error(str(option_error(exc)))
    if isinstance(exc, OSError) and exc.filename is not None:
        _error(f"{exc.filename}: {exc.strerror or exc}")
