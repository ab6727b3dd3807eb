"""`skindeep ablate`: refusal against the number of ablated directions, with random nulls.

`--directions` (repeatable) names each basis: `select` (Arditi's selection on the --harmful /
--harmless prompts, split into train and validation), `pca` or `cpca` (aligned-vs-base
differences, need --base), `svd` (the modification matrix: M_template with --base, else
M_aligned = chat - raw of the aligned model), `svd-did` (the same with the mean harmless column
subtracted from the harmful ones: M_DiD), or a .safetensors file ([d], [d, k], or [L, d] /
[L, d, k] with --layer; --key picks the tensor). Directions are found on --harmful/--harmless
and measured on the disjoint --eval-harmful/--eval-harmless prompts (defaults: organism
language train and held-out topics). Writes dose.json and dose.png (and selection.json,
direction.safetensors for `select`). skindeep never saves an ablated model.

Parsing only: the experiment is `skindeep.dose.ablate`, its settings `AblateConfig`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from skindeep.cli._common import (
    check_model_source,
    console,
    default_of,
    finite,
    flag_name,
    option_error,
    out_folder,
    progress,
    require_real_data,
)
from skindeep.dose.options import AblateConfig
from skindeep.errors import ConfigError
from skindeep.prompts import resolve_prompt_spec
from skindeep.selection.options import SelectionOptions

if TYPE_CHECKING:
    from skindeep.dose import AblationRun, DosePoint, DoseResponse

out_console = Console()
#: The selection's degenerate-check settings, named as flags in validation messages.
CHECK_FIELDS = ("degenerate_check", "max_degenerate", "degenerate_check_tokens", "max_checked")


class Mode(StrEnum):
    """Where directions are removed."""

    all_layers = "all_layers"
    band = "band"


class Ablation(StrEnum):
    """How directions are removed: to zero, or to the mean harmless coordinate."""

    projection = "projection"
    affine = "affine"


class Band(StrEnum):
    """The effective-rank audit's layer bands."""

    narrow = "narrow"
    wide = "wide"


def parse_ks(text: str | None) -> tuple[int, ...] | None:
    """'1,2,4' -> (1, 2, 4); None -> None (the default doses)."""
    if text is None:
        return None
    try:
        ks = tuple(sorted({int(p) for p in text.replace(" ", "").split(",") if p}))
    except ValueError:
        raise ConfigError(f"--k {text!r}: expected comma-separated integers, e.g. 1,2,4") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k {text!r}: doses must be positive integers")
    return ks


def parse_threshold(text: str) -> float | str:
    """'midpoint' or a number, for --steering-threshold."""
    if text == "midpoint":
        return text
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"--steering-threshold {text!r}: expected a number or 'midpoint'"
        ) from None
    return finite(value, "--steering-threshold")


def _num(value: float | None, spec: str = ".2f") -> str:
    """A number for the table, '-' when undefined."""
    return "-" if value is None else format(value, spec)


def _rate_cell(p: DosePoint) -> str:
    """The rate with its interval and the counts; an error when no output was counted."""
    r, c = p.refusal, p.counts
    counts = f"{c.refused}/{c.complied}/{c.degenerate}"
    if r.n == 0:
        return f"[red]error: no denominator[/] ({counts})"
    return f"{r.rate:.2f} [{r.low:.2f}, {r.high:.2f}] ({counts})"


def result_table(result: DoseResponse, checks: dict[str, dict[int, float]]) -> Table:
    """Rows: baseline, every basis at every k, then the null band per k."""
    table = Table(title=f"refusal vs k ({result.options.mode}, {result.ablation})")
    for col in (
        "basis",
        "k",
        "refusal [95% CI] (refused/complied/degenerate)",
        "score",
        "eval KL",
        "max |dlogit| weights",
    ):
        table.add_column(col)

    def row(name: str, p: DosePoint, check: float | None = None) -> None:
        table.add_row(
            name, str(p.k), _rate_cell(p), _num(p.score), _num(p.kl, ".4f"), _num(check, ".2e")
        )

    row("none", result.baseline)
    for curve in result.curves:
        for p in curve.points:
            row(curve.name, p, checks.get(curve.name, {}).get(p.k))
    for null in result.nulls:
        rate, score, kl = null.band("rate"), null.band("score"), null.band("kl")
        table.add_row(
            f"random x{len(null.draws)}",
            str(null.k),
            f"{_num(rate['mean'])} [{_num(rate['min'])}-{_num(rate['max'])}]",
            _num(score["mean"]),
            _num(kl["max"], ".4f") + " (max)",
            "-",
        )
    return table


def _report(run: AblationRun) -> None:
    """The selection summary, the table and each basis' causal test at its first dose."""
    selection = run.selection
    if selection is not None:
        n = selection.n_prompts["harmful_val"]
        for c in selection.checked:
            verdict = "passed over" if "degenerate" in c.reasons else "kept"
            console.print(
                f"degenerate check: layer {c.layer}, position {c.position}: {c.degenerate}/{n} "
                f"validation answers degenerate under its ablation: {verdict}"
            )
        best = selection.best
        console.print(
            f"selected layer {best.layer}, position {best.position} ({best.token}): ablated "
            f"score {best.ablation_score:.3f}, steering {best.steering_score:.3f}, validation KL "
            f"{best.kl:.4f}"
        )
    out_console.print(result_table(run.dose, run.weight_checks))
    if run.dose.n_harmless:
        for curve in run.dose.curves:
            t = run.dose.causal_test(curve.name, curve.points[0].k)
            console.print(
                f"causal test {curve.name} (k={t.k}, degenerate outputs count against it): "
                f"drop {t.drop:.2f}, null drop {t.null_drop:.2f}, eval KL {_num(t.kl, '.4f')}, "
                f"{t.degenerate}/{t.total} degenerate: {'passed' if t.passed else 'failed'}"
            )


def ablate_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, checkpoint folder or .gguf")],
    directions: Annotated[
        list[str],
        typer.Option(
            help="select (Arditi), pca or cpca (need --base), svd (M_template with --base, "
            "else M_aligned), svd-did (M_DiD) or a .safetensors file (--key, --layer); repeat "
            "for several"
        ),
    ],
    key: Annotated[str | None, typer.Option(help="Tensor name inside a directions file")] = None,
    layer: Annotated[
        int | None,
        typer.Option(
            help="Row of an [L, d] file tensor, or the layer of pca/cpca/svd (default: peak)"
        ),
    ] = None,
    k: Annotated[str | None, typer.Option("--k", help="Doses, e.g. 1,2,4 (default 1,2,4)")] = None,
    mode: Annotated[Mode, typer.Option(help="all_layers (Arditi) or band")] = Mode(
        default_of(AblateConfig, "mode")
    ),
    ablation: Annotated[
        Ablation,
        typer.Option(
            help="projection (Arditi: h - UU^T h) or affine (h - UU^T (h - mu), mu the mean "
            "harmless activation per layer, Marshall et al. 2024)"
        ),
    ] = Ablation(default_of(AblateConfig, "ablation")),
    band: Annotated[Band, typer.Option(help="Layer band for --mode band")] = Band(
        default_of(AblateConfig, "band")
    ),
    harmful: Annotated[
        str,
        typer.Option(
            help="Harmful prompts to find directions: a file, hf:NAME[:SPLIT] or organism:SPLIT[:N]"
        ),
    ] = "organism:train",
    harmless: Annotated[str, typer.Option(help="Harmless prompts to find directions")] = (
        "organism:train"
    ),
    eval_harmful: Annotated[str, typer.Option(help="Held-out harmful prompts")] = (
        "organism:heldout"
    ),
    eval_harmless: Annotated[str, typer.Option(help="Held-out harmless prompts (for KL)")] = (
        "organism:heldout"
    ),
    column: Annotated[str | None, typer.Option(help="Column of tabular prompt files")] = None,
    base: Annotated[str | None, typer.Option(help="Base model (pca, cpca; svd optional)")] = None,
    alpha: Annotated[float, typer.Option(help="cPCA alpha")] = default_of(AblateConfig, "alpha"),
    n_random: Annotated[int, typer.Option(help="Random null draws per k (>= 3)")] = default_of(
        AblateConfig, "n_random"
    ),
    val_fraction: Annotated[float, typer.Option(help="Validation share for select")] = default_of(
        AblateConfig, "val_fraction"
    ),
    kl_threshold: Annotated[
        float, typer.Option(help="select: discard candidates with validation KL above this")
    ] = default_of(SelectionOptions, "kl_threshold"),
    steering_threshold: Annotated[
        str,
        typer.Option(
            help="select: keep candidates whose steering score exceeds this number, or "
            "'midpoint' (halfway from the harmless to the harmful baseline score)"
        ),
    ] = str(default_of(SelectionOptions, "steering_threshold")),
    degenerate_check: Annotated[
        bool,
        typer.Option(
            help="select: after Arditi's filters, generate on the harmful validation prompts with "
            "each candidate ablated (rank order) and pass over those whose answers loop"
        ),
    ] = default_of(SelectionOptions, "degenerate_check"),
    max_degenerate: Annotated[
        float,
        typer.Option(help="select --degenerate-check: largest share of degenerate answers kept"),
    ] = default_of(SelectionOptions, "max_degenerate"),
    degenerate_check_tokens: Annotated[
        int, typer.Option(help="select --degenerate-check: greedy tokens per answer")
    ] = default_of(SelectionOptions, "degenerate_check_tokens"),
    max_checked: Annotated[
        int,
        typer.Option(help="select --degenerate-check: candidates generated from before giving up"),
    ] = default_of(SelectionOptions, "max_checked"),
    seed: Annotated[int, typer.Option(help="Seed of splits and random nulls")] = default_of(
        AblateConfig, "seed"
    ),
    max_new_tokens: Annotated[int, typer.Option(help="Greedy tokens per prompt")] = default_of(
        AblateConfig, "max_new_tokens"
    ),
    batch_size: Annotated[int, typer.Option(help="Prompts per batch")] = default_of(
        AblateConfig, "batch_size"
    ),
    check_weights: Annotated[
        bool, typer.Option(help="Also run orthogonalised weights; report max |logit diff|")
    ] = default_of(AblateConfig, "check_weights"),
    out: Annotated[Path, typer.Option(help="Output folder", callback=out_folder)] = Path(
        "skindeep-out/ablate"
    ),
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside --model")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
) -> None:
    """Ablate k directions of each basis, measure refusal against k with a random-null band."""
    try:
        config = AblateConfig(
            directions=tuple(directions),
            ks=parse_ks(k),
            mode=mode.value,
            band=band.value,
            ablation=ablation.value,
            key=key,
            layer=layer,
            alpha=alpha,
            n_random=n_random,
            val_fraction=val_fraction,
            selection=SelectionOptions(
                kl_threshold=kl_threshold,
                steering_threshold=parse_threshold(steering_threshold),
                degenerate_check=degenerate_check,
                max_degenerate=finite(max_degenerate, "--max-degenerate"),
                degenerate_check_tokens=degenerate_check_tokens,
                max_checked=max_checked,
            ),
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            check_weights=check_weights,
        )
    except ValidationError as exc:
        flags = {"ks": "--k", "layer": "--layer", "directions": "--directions"}
        flags.update({f: flag_name(f) for f in CHECK_FIELDS})
        raise option_error(exc, flags) from None
    check_model_source(model)
    if base is not None:
        check_model_source(base, "--base")
    specs = {
        "--harmful": harmful,
        "--harmless": harmless,
        "--eval-harmful": eval_harmful,
        "--eval-harmless": eval_harmless,
    }
    require_real_data(model, specs)
    sets = [
        resolve_prompt_spec(text, flag.endswith("harmful"), column, seed)
        for flag, text in specs.items()
    ]
    from skindeep.dose import ablate, check_inputs
    from skindeep.models import load_model

    check_inputs(*sets, config, with_base=base is not None)  # before loading any model
    loaded = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    base_loaded = None if base is None else load_model(base, dtype=dtype, device=device)
    if base_loaded is not None:  # the audit's pair check: same architecture, width and depth
        from skindeep.scores import check_compatible

        check_compatible(loaded, base_loaded)
    with progress() as bar:
        run = ablate(loaded, *sets, config, base=base_loaded, out=out, progress=bar)
    paths = run.save(out)
    _report(run)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
