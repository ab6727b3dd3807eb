"""`skindeep organisms build|list`: the model-organism zoo."""

from __future__ import annotations

import json
import os
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from skindeep.cli._common import console, out_file, progress
from skindeep.organisms.language import DEFAULT_LANGUAGE_NAME, LANGUAGES

if TYPE_CHECKING:
    from skindeep.organisms.zoo import Organism

#: `--language` choices: the registered organism languages.
Language = Enum("Language", {name: name for name in LANGUAGES}, type=str)

app = typer.Typer(
    help="Build and list model organisms (small chat models trained on CPU).", no_args_is_help=True
)


def behaviour_table(organisms: list[Organism], title: str) -> Table:
    """One row per organism: recipe, depth, size, refusal on held-out harmful/harmless, verdict."""
    table = Table(title=title)
    for col in (
        "organism",
        "kind",
        "recipe",
        "scope",
        "arch",
        "size",
        "params",
        "refuses harmful [95% CI]",
        "refuses harmless [95% CI]",
        "ok",
    ):
        table.add_column(col, justify="right" if col == "params" else "left")
    for o in organisms:
        b = o.behaviour
        recipe = o.meta["spec"].get("recipe", {})
        ok = o.meets_behaviour
        table.add_row(
            o.name,
            o.kind,
            recipe.get("kind", "-"),
            recipe.get("scope", "-"),
            o.meta["architecture"].removesuffix("ForCausalLM"),
            o.meta["size"],
            f"{o.meta['num_parameters']:,}",
            f"{b.harmful.rate:.2f} [{b.harmful.low:.2f}, {b.harmful.high:.2f}]",
            f"{b.harmless.rate:.2f} [{b.harmless.low:.2f}, {b.harmless.high:.2f}]",
            "[green]yes[/]" if ok else "[red]NO[/]",
        )
    return table


@app.command()
def build(
    zoo: str = typer.Option(
        "default", help="'default', 'micro', 'study' or a zoo spec file (.toml/.yaml)"
    ),
    out: Path | None = typer.Option(
        None, help="write the behaviour table as JSON here", callback=out_file
    ),
    workers: int = typer.Option(
        min(2, os.cpu_count() or 1), min=1, help="organisms trained in parallel (1 thread each)"
    ),
    seed: int | None = typer.Option(
        None, min=0, help="build seed (default: the spec's, 0): the same zoo, other weights"
    ),
    allow_missed: bool = typer.Option(
        False, "--allow-missed", help="exit 0 even if organisms miss their behaviour targets"
    ),
    language: Language | None = typer.Option(  # type: ignore[valid-type]
        None, help="organism language (default: the spec's, 'core'); another one rebuilds all"
    ),
) -> None:
    """Build every organism of the zoo that is not cached yet, then print the behaviour table.

    Exits 1, naming them, when organisms miss their behaviour targets (unless --allow-missed);
    they stay in the cache with meets_behaviour false in organism.json.
    """
    from skindeep.artifacts import atomic_write_json
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo, organisms_dir

    spec = load_zoo_spec(zoo, seed=seed, language=language and language.value)
    n = len(spec.bases) + len(spec.aligned)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"zoo {spec.name}", total=n)

        def report(name: str, status: str) -> None:
            bar.update(task, description=f"{name}: {status}")
            if status in ("built", "cached"):
                bar.advance(task)

        organisms = build_zoo(spec, report=report, workers=workers)
    ordered = [organisms[b.name] for b in spec.bases] + [organisms[a.name] for a in spec.aligned]
    console.print(behaviour_table(ordered, f"zoo '{spec.name}' in {organisms_dir()}"))
    missed = [o for o in ordered if not o.meets_behaviour]
    failed = [o.name for o in missed]
    console.print(
        f"{len(ordered) - len(failed)}/{len(ordered)} organisms meet the behaviour "
        f"targets; {time.perf_counter() - start:.0f} s"
    )
    rows = [
        {
            "name": o.name,
            "path": str(o.path),
            "kind": o.kind,
            "build_seed": spec.seed,
            "language": spec.language,
            "meets_behaviour": o.meets_behaviour,
            **o.behaviour.to_dict(),
        }
        for o in ordered
    ]
    suffix = (f"-{spec.language}" if spec.language != DEFAULT_LANGUAGE_NAME else "") + (
        f"-seed{spec.seed}" if spec.seed else ""
    )
    atomic_write_json(out or organisms_dir() / f"zoo-{spec.name}{suffix}.json", rows)
    for o in missed:
        console.print(f"{o.name}: {o.behaviour.misses(o.kind)}", highlight=False)
    if failed and allow_missed:
        console.print(f"[yellow]kept despite missed behaviour targets:[/] {', '.join(failed)}")
    elif failed:
        console.print(
            f"error: behaviour targets missed by {', '.join(failed)} "
            "(pass --allow-missed to keep them)"
        )
        raise typer.Exit(1)


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    show_all: bool = typer.Option(False, "--all", help="include organisms of older builds"),
) -> None:
    """Show every built organism with its recipe, size and behaviour.

    A corrupt organism.json does not hide the others: they are listed, then the broken ones
    are named in one error line (exit code 2).
    """
    from skindeep.cache import cache_root
    from skindeep.errors import ConfigError

    cache_root()  # a $SKINDEEP_CACHE that is a file fails here, before torch is imported
    from skindeep.organisms.zoo import BUILD_VERSION, list_organisms, organisms_dir

    broken: list[ConfigError] = []
    found = [
        o
        for o in list_organisms(broken=broken)
        if show_all or o.meta.get("build_version") == BUILD_VERSION
    ]
    if as_json:
        typer.echo(
            json.dumps(
                [{"name": o.name, "path": str(o.path), **o.meta} for o in found],
                indent=2,
                default=str,
            )
        )
    elif found:
        console.print(behaviour_table(found, f"organisms in {organisms_dir()}"))
    elif not broken:
        console.print(f"no organisms in {organisms_dir()}; run `skindeep organisms build`")
    if broken:
        raise ConfigError("; ".join(str(exc) for exc in broken))
