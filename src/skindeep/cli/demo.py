"""`skindeep demo`: the whole pipeline on the embedded default zoo, ending in the report.

Three stages, each with a progress bar: build the zoo (organisms already in the cache are
free), run the `demo` study on it (every model's audit, direction selection, tracked benign
fine-tuning and sweep are cached per step), and render the report. A second run recomputes
only the cross-model statistics and the report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from skindeep.cli._common import console, out_folder, progress

DEMO_CONFIG = "demo"


def demo_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for study.json and the report", callback=out_folder
        ),
    ] = Path("skindeep-demo"),
    workers: Annotated[
        int, typer.Option(min=0, help="Parallel worker processes (0: one per available CPU)")
    ] = 0,
    config_name: Annotated[
        str,
        typer.Option("--config", help="Study config: 'demo' (default zoo), 'micro' or a file"),
    ] = DEMO_CONFIG,
) -> None:
    """Build the default zoo, run the demo study on it, write the report, print the headline.

    Everything is cached: a second run reuses the organisms and every model's results.
    `--config micro` runs the same stages on the three-organism micro zoo in a minute or two.
    """
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo
    from skindeep.report.build import build_document
    from skindeep.report.write import write_report
    from skindeep.study.config import load_study_config
    from skindeep.study.executors import default_workers
    from skindeep.study.runner import run_study

    began = time.perf_counter()
    config = load_study_config(config_name)
    n_workers = workers or default_workers()
    with progress(eta=True) as bar:
        for ref in config.zoo:
            spec = load_zoo_spec(ref.name, seed=ref.seed, language=ref.language)
            task = bar.add_task(f"1/3 zoo {spec.name}", total=len(spec.bases) + len(spec.aligned))

            def built(name: str, status: str, task: int = task) -> None:
                bar.update(task, description=f"1/3 zoo: {name} {status}")
                if status in ("built", "cached"):
                    bar.advance(task)

            build_zoo(spec, report=built, workers=n_workers)
        study = bar.add_task("2/3 study: models", total=None)

        def finished(name: str, done: int, total: int) -> None:
            bar.update(study, completed=done, total=total, description=f"2/3 study: {name} done")

        result = run_study(config, out, workers=n_workers, report=finished)
        render = bar.add_task("3/3 report", total=1)
        doc = build_document(out)
        files = write_report(doc, out)
        bar.update(render, completed=1)
    n_in, n_out = len(result.included()), len(result.excluded())
    console.print(
        f"demo: {n_in} models in the statistics, {n_out} excluded; "
        f"{time.perf_counter() - began:.0f} s (study {result.settings.wall_seconds:.0f} s)"
    )
    typer.echo(doc.numbers.get("verdict", result.headline))
    for line in doc.numbers.get("details", []):
        typer.echo(f"  {line}")
    typer.echo(f"report: {files.html.resolve()}")
