"""`skindeep study run CONFIG --out DIR`: the predictive study across many aligned models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skindeep.cli._common import console, out_folder, progress
from skindeep.errors import ConfigError

app = typer.Typer(
    help="The predictive study: does the geometry predict refusal loss under fine-tuning?",
    no_args_is_help=True,
)


def render_report(out: Path) -> None:
    """The study report (HTML and Markdown) from study.json, beside it (`skindeep report`)."""
    from skindeep.report.build import render

    files = render(out)
    console.print(f"report: {files.html} and {files.markdown}")


@app.command("run")
def run(
    config: Annotated[str, typer.Argument(help="'demo', 'study', 'micro' or a .toml/.yaml file")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for study.json and tables", callback=out_folder),
    ],
    executor: Annotated[str, typer.Option(help="'local' (process pool) or 'ray'")] = "local",
    workers: Annotated[
        int, typer.Option(help="Local worker processes (0: one per available CPU)")
    ] = 0,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local one)")
    ] = None,
) -> None:
    """Run (or resume) a study: cached per-model pipelines, then the cross-model statistics."""
    from skindeep.study.config import load_study_config
    from skindeep.study.executors import default_workers
    from skindeep.study.runner import run_study

    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    if address and executor != "ray":
        raise ConfigError("--address needs --executor ray")
    cfg = load_study_config(config)
    n_workers = workers or default_workers()
    with progress() as bar:
        task = bar.add_task("models", total=None)

        def report(name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{name} done")

        result = run_study(
            cfg, out, executor=executor, workers=n_workers, address=address,  # type: ignore[arg-type]
            report=report,
        )  # fmt: skip
    render_report(out)
    excluded = result.excluded()
    if excluded:
        console.print(f"excluded {len(excluded)} model(s):")
        for m in excluded:
            console.print(f"  {m.name}: {m.excluded}")
    console.print(f"wrote {out / 'study.json'} ({result.settings.wall_seconds:.0f} s)")
    typer.echo(result.headline)
