"""`skindeep audit`: the Skin-Deep geometry of one aligned/base pair, written to a folder.

Prompt sets are files (.txt one per line, .json, .jsonl, .csv/.tsv) or the organism language:
`organism:heldout` / `organism:train` draw --n-prompts (default 64) distinct requests of the
right class from the generated chat language (held-out topics are never seen in alignment).

`compare_command` reads the safety subspaces two audits wrote and measures principal angles
between them layer by layer (and across all layer pairs).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from skindeep.cli._common import console, option_error, out_folder, progress
from skindeep.errors import ConfigError
from skindeep.prompts import PromptSet, check_pair, resolve_prompt_spec

out = Console()


class Variant(StrEnum):
    """Headline GFS variant."""

    code = "code"
    paper = "paper"


class Format(StrEnum):
    """Prompt format."""

    raw = "raw"
    chat = "chat"


class Site(StrEnum):
    """Where activations are read."""

    block_out = "block_out"
    block_in = "block_in"


class LastLayer(StrEnum):
    """How the model's last layer is read."""

    raw = "raw"
    normed = "normed"


class Preset(StrEnum):
    """Named conventions that set several options at once."""

    skin_deep_code = "skin-deep-code"


#: The options a preset sets, by parameter name -> flag.
_PRESET_FLAGS = {
    "variant": "--variant",
    "fmt": "--format",
    "layers": "--layers",
    "site": "--site",
    "last_layer": "--last-layer",
}


def _preset_clashes(ctx: typer.Context, preset: str, given: dict[str, object]) -> None:
    """Raise when an option the preset sets was given on the command line with another value."""
    from skindeep.scores.config import PRESETS

    for name, flag in _PRESET_FLAGS.items():
        source = ctx.get_parameter_source(name)
        wanted = PRESETS[preset][name]
        value = given[name]
        # by name: typer may run on its own copy of click, with its own ParameterSource enum
        if getattr(source, "name", None) == "COMMANDLINE" and value != wanted:
            shown = "all" if wanted is None else wanted
            raise ConfigError(
                f"--preset {preset} sets {flag} {shown}; drop {flag} {value} (or the preset)"
            )


class StatsOn(StrEnum):
    """What the layer statistics compare."""

    aligned = "aligned"
    difference = "difference"


class PermanovaDistance(StrEnum):
    """PERMANOVA dissimilarity (euclidean: squared Euclidean distances enter the pseudo-F)."""

    euclidean = "euclidean"
    sqeuclidean = "sqeuclidean"


def resolve_prompts(
    text: str, harmful: bool, n: int | None, column: str | None, seed: int
) -> PromptSet:
    """A prompt set from a file, `hf:NAME[:SPLIT]` or `organism:SPLIT[-CLASS][:N]`."""
    found = resolve_prompt_spec(text, harmful, column, seed, n)
    if not text.startswith(("organism:", "hf:")):
        kind = "harmful" if harmful else "harmless"
        found = replace(found, name=f"{kind}:{Path(text).stem}")
    return found


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'0,2,-1' -> (0, 2, -1); None or 'all' -> None (every layer)."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(
            f"--layers {text!r}: expected comma-separated integers, e.g. 0,2,-1"
        ) from None


def _exclusive(a: object, b: object, names: str) -> None:
    """Raise when two alternative options are both given."""
    if a is not None and b:
        raise ConfigError(f"give {names}, not both")


def audit(
    ctx: typer.Context,
    aligned: Annotated[
        str, typer.Option("--aligned", "-a", help="Aligned model: hub id or folder")
    ],
    base: Annotated[str, typer.Option("--base", "-b", help="Its base model: hub id or folder")],
    harmful: Annotated[
        str,
        typer.Option(help="Harmful prompts: file, hf:NAME[:SPLIT] or organism:heldout|train[:N]"),
    ],
    harmless: Annotated[
        str,
        typer.Option(help="Harmless prompts: file, hf:NAME[:SPLIT] or organism:heldout|train[:N]"),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results", callback=out_folder)
    ] = Path("audit"),
    variant: Annotated[Variant, typer.Option(help="Headline GFS variant")] = Variant.code,
    fmt: Annotated[Format, typer.Option("--format", help="Prompt format")] = Format.chat,
    layers: Annotated[str | None, typer.Option(help="Layers, e.g. 0,2,-1 (default all)")] = None,
    site: Annotated[Site, typer.Option(help="Read block outputs or inputs")] = Site.block_out,
    last_layer: Annotated[
        LastLayer,
        typer.Option(
            help="The last layer as the raw block output, or normed: after the final norm "
            "(transformers' hidden_states[-1], as the Skin-Deep code reads it)"
        ),
    ] = LastLayer.raw,
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="skin-deep-code: every choice as the Skin-Deep code makes it (hidden_states[1:] "
            "with the last layer normed, raw prompts, last token, PC1 of D over all prompts, "
            "code variant)"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass")] = 16,
    n_perm: Annotated[int, typer.Option(min=1, help="Permutations per layer test")] = 1000,
    alpha: Annotated[float | None, typer.Option(min=0, help="cPCA alpha (default 100)")] = None,
    select_alpha: Annotated[bool, typer.Option(help="Pick alpha by held-out probe")] = False,
    k: Annotated[int | None, typer.Option(min=1, help="Fixed subspace dimension")] = None,
    eps: Annotated[float | None, typer.Option(help="Energy tolerance for k (default 0.05)")] = None,
    stats_on: Annotated[StatsOn, typer.Option(help="Layer tests on")] = StatsOn.aligned,
    permanova_distance: Annotated[
        PermanovaDistance,
        typer.Option(help="PERMANOVA dissimilarity; euclidean: sums of squared distances"),
    ] = PermanovaDistance.euclidean,
    n_prompts: Annotated[int | None, typer.Option(min=1, help="Prompts per class")] = None,
    column: Annotated[str | None, typer.Option(help="Column of tabular prompt files")] = None,
    seed: Annotated[int, typer.Option(help="Seed of organism prompts, splits, permutations")] = 0,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
    refresh: Annotated[bool, typer.Option(help="Recollect cached activations")] = False,
) -> None:
    """Audit an aligned model against its base: GFS, safety subspace, CKA, layer tests.

    Prompts: a file (.txt one per line, .json, .jsonl, .csv/.tsv; --column picks the column) or
    organism:heldout / organism:train, --n-prompts (default 64) requests of the right class from
    the organism chat language. Writes audit.json, layers.csv (and .parquet with pyarrow),
    directions.safetensors, profiles.png and spectra.png into --out; activations are cached.
    """
    from pydantic import ValidationError

    from skindeep.models import load_model  # lazy: keeps `skindeep --help` fast
    from skindeep.report import audit_summary_table, write_audit
    from skindeep.report.plots import short_name
    from skindeep.scores import AuditConfig, audit_pair

    _exclusive(alpha, select_alpha, "--alpha or --select-alpha")
    _exclusive(k, eps is not None, "--k or --eps")
    conventions = dict(
        variant=variant.value, fmt=fmt.value, layers=parse_layers(layers), site=site.value,
        last_layer=last_layer.value,
    )  # fmt: skip
    options = dict(
        batch_size=batch_size, n_perm=n_perm, alpha=100.0 if alpha is None else alpha,
        select_alpha=select_alpha, k=k, eps=0.05 if eps is None else eps,
        stats_on=stats_on.value, permanova_distance=permanova_distance.value, seed=seed,
        refresh=refresh,
    )  # fmt: skip
    try:
        if preset is None:
            config = AuditConfig(**conventions, **options)
        else:
            _preset_clashes(ctx, preset.value, conventions)
            config = AuditConfig.preset_config(preset.value, **options)
    except ValidationError as exc:
        raise option_error(exc, {"fmt": "--format"}) from None
    harmful_set = resolve_prompts(harmful, True, n_prompts, column, seed)
    harmless_set = resolve_prompts(harmless, False, n_prompts, column, seed)
    check_pair(harmful_set, harmless_set)  # before loading any model
    # lazy: weights are read only if an activation cache entry is missing (a warm audit
    # never reads them)
    aligned_model = load_model(aligned, dtype=dtype, device=device, lazy=True)
    base_model = load_model(base, dtype=dtype, device=device, lazy=True)
    with progress() as bar:
        result = audit_pair(aligned_model, base_model, harmful_set, harmless_set, config, bar)
    files = write_audit(result, out_dir)
    title = f"audit: {short_name(aligned)} vs {short_name(base)}"
    out.print(audit_summary_table(result, title=title))
    console.print(f"results in {out_dir}: {', '.join(p.name for p in vars(files).values() if p)}")


def compare_command(
    run_a: Annotated[
        Path, typer.Argument(metavar="RUN_A", help="Folder written by `skindeep audit`")
    ],
    run_b: Annotated[
        Path | None,
        typer.Argument(metavar="[RUN_B]", help="A second audit folder (omit: A across layers)"),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for compare.json", callback=out_folder)
    ] = Path("audit-compare"),
) -> None:
    """Principal angles between the safety subspaces of two audits, layer by layer.

    Reads the directions.safetensors of each audit folder. Both audits need the same hidden
    size and layers; angles at a layer where either audit found D_l = 0 are undefined. Writes
    compare.json (per-layer angles, all layer pairs across and within the audits) into --out.
    """
    from skindeep.report import compare_runs, comparison_table, read_subspaces, write_comparison

    a = read_subspaces(run_a)
    b = None if run_b is None else read_subspaces(run_b)
    cmp = compare_runs(a, b)
    path = write_comparison(cmp, out_dir)
    out.print(comparison_table(cmp))
    console.print(f"results in {path}")
