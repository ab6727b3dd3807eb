"""The `skindeep` command: one small module per command group, errors printed without tracebacks."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from skindeep.cli._common import console
from skindeep.cli.ablate import ablate_command
from skindeep.cli.audit import audit as audit_command
from skindeep.cli.audit import compare_command
from skindeep.cli.model import app as model_app
from skindeep.cli.organisms import app as organisms_app
from skindeep.cli.refusal import refusal
from skindeep.cli.retention import retention
from skindeep.cli.study import app as study_app
from skindeep.errors import SkindeepError

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


def _quiet_libraries() -> None:
    """Keep transformers' per-file progress bars and notices out of the command's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main() -> None:
    """Entry point: run the app; expected failures become one red line and exit code 2."""
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except SkindeepError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished results are kept, rerun to resume[/]")
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
