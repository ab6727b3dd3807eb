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
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skindeep.cache import atomic_write_json
from skindeep.cli._common import console, progress, require_real_data
from skindeep.cli.refusal import resolve_prompts
from skindeep.errors import ConfigError, PromptError
from skindeep.prompts import PromptSet, check_pair, split_prompts

if TYPE_CHECKING:
    from skindeep.dose import DosePoint, DoseResponse, NamedBasis
    from skindeep.models import LoadedModel

ACTIVATION_KINDS = ("pca", "cpca", "svd", "svd-did")
DEFAULT_KS = (1, 2, 4)
out_console = Console()


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
        return float(text)
    except ValueError:
        raise ConfigError(
            f"--steering-threshold {text!r}: expected a number or 'midpoint'"
        ) from None


def _disjoint(find: PromptSet, evaluate: PromptSet) -> None:
    """Held-out evaluation prompts must not be among those used to find directions."""
    shared = set(find) & set(evaluate)
    if shared:
        raise PromptError(
            f"{len(shared)} evaluation prompt(s) of {evaluate.source} are also used to find "
            f"directions ({find.source}), e.g. {sorted(shared)[0]!r}; use disjoint sets"
        )


def _select_basis(
    loaded: LoadedModel, harmful: PromptSet, harmless: PromptSet, args: dict[str, Any]
) -> NamedBasis:
    """Arditi's selection on a train/validation split; writes its JSON before any failure."""
    from skindeep.dose import named_basis
    from skindeep.selection import SelectionError, SelectionOptions, select_direction

    val = args["val_fraction"]
    h_train, h_val = split_prompts(harmful, (1 - val, val), args["seed"])
    l_train, l_val = split_prompts(harmless, (1 - val, val), args["seed"])
    options = SelectionOptions(
        kl_threshold=args["kl_threshold"],
        batch_size=args["batch_size"],
        ablation=args["ablation"],
        steering_threshold=args["steering_threshold"],
    )
    selection = select_direction(
        loaded.model, loaded.tokenizer, loaded.adapter, h_train, l_train, h_val, l_val, options
    )
    path = selection.save(args["out"])
    try:
        best = selection.best
    except SelectionError as exc:
        raise SelectionError(f"{exc} in {path}") from None
    console.print(
        f"selected layer {best.layer}, position {best.position} ({best.token}): ablated score "
        f"{best.ablation_score:.3f}, steering {best.steering_score:.3f}, KL {best.kl:.4f} "
        f"({path})"
    )
    args["selection_reference"] = selection.reference
    args["selection_position"] = best.position
    source = f"Arditi selection: layer {best.layer}, position {best.position}"
    return named_basis("arditi", selection.direction, source, best.layer)


def _bases(
    loaded: LoadedModel,
    base: LoadedModel | None,
    harmful: PromptSet,
    harmless: PromptSet,
    args: dict[str, Any],
) -> list[NamedBasis]:
    """One NamedBasis per --directions entry, names made unique."""
    from skindeep.dose import activation_basis, load_basis

    if args["layer"] is not None and args["directions"] == ["select"]:
        raise ConfigError("--layer does not apply to --directions select (it picks its own)")
    found = []
    for spec in args["directions"]:
        if spec == "select":
            found.append(_select_basis(loaded, harmful, harmless, args))
        elif spec in ACTIVATION_KINDS:
            k_max = max(args["ks"] or DEFAULT_KS)
            found.append(
                activation_basis(
                    spec,
                    loaded,
                    list(harmful),
                    list(harmless),
                    base,
                    args["layer"],
                    k_max,
                    args["alpha"],
                    args["batch_size"],
                )
            )
        elif Path(spec).is_file():
            found.append(load_basis(spec, loaded.adapter.hidden_size, args["key"], args["layer"]))
        else:
            raise ConfigError(
                f"--directions {spec!r}: not select, pca, cpca, svd or svd-did, and the file does "
                "not exist"
            )
        names = [b.name for b in found[:-1]]
        if found[-1].name in names:
            found[-1] = replace(found[-1], name=f"{found[-1].name}#{len(found)}")
    return found


def _result_table(result: DoseResponse, checks: dict[str, dict[int, float]]) -> Table:
    """Rows: baseline, every basis at every k, then the null band per k."""
    table = Table(title=f"refusal vs k ({result.options.mode})")
    for col in ("basis", "k", "refusal [95% CI]", "score", "harmless KL", "max |dlogit| weights"):
        table.add_column(col)

    def row(name: str, p: DosePoint, check: float | None = None) -> None:
        r = p.refusal
        table.add_row(
            name,
            str(p.k),
            f"{_num(r.rate)} [{r.low:.2f}, {r.high:.2f}]",
            _num(p.score),
            _num(p.kl, ".4f"),
            _num(check, ".2e"),
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


def _num(value: float | None, spec: str = ".2f") -> str:
    """A number for the table, '-' when undefined."""
    return "-" if value is None else format(value, spec)


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
    mode: Annotated[Mode, typer.Option(help="all_layers (Arditi) or band")] = Mode.all_layers,
    ablation: Annotated[
        Ablation,
        typer.Option(
            help="projection (Arditi: h - UU^T h) or affine (h - UU^T (h - mu), mu the mean "
            "harmless activation per layer, Marshall et al. 2024)"
        ),
    ] = Ablation.projection,
    band: Annotated[Band, typer.Option(help="Layer band for --mode band")] = Band.narrow,
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
    alpha: Annotated[float, typer.Option(help="cPCA alpha")] = 100.0,
    n_random: Annotated[int, typer.Option(min=3, help="Random null draws per k (>= 3)")] = 3,
    val_fraction: Annotated[float, typer.Option(help="Validation share for select")] = 0.2,
    kl_threshold: Annotated[
        float, typer.Option(help="select: discard candidates with harmless KL above this")
    ] = 0.1,
    steering_threshold: Annotated[
        str,
        typer.Option(
            help="select: keep candidates whose steering score exceeds this number, or "
            "'midpoint' (halfway from the harmless to the harmful baseline score)"
        ),
    ] = "0",
    seed: Annotated[int, typer.Option(help="Seed of splits and random nulls")] = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens per prompt")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch")] = 16,
    check_weights: Annotated[
        bool, typer.Option(help="Also run orthogonalised weights; report max |logit diff|")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("skindeep-out/ablate"),
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside --model")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
) -> None:
    """Ablate k directions of each basis, measure refusal against k with a random-null band."""
    from skindeep.dose import DoseOptions, dose_response, harmless_reference, weight_check
    from skindeep.interventions import bands, writer_paths
    from skindeep.models import load_model

    ks = parse_ks(k)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    if check_weights and (mode is Mode.band or ablation is Ablation.affine):
        raise ConfigError(
            "--check-weights compares with all_layers projection ablation; drop --mode band "
            "and --ablation affine"
        )
    if base is not None and not any(d in ACTIVATION_KINDS for d in directions):
        raise ConfigError("--base is only used by --directions pca, cpca, svd or svd-did")
    require_real_data(
        model,
        {
            "--harmful": harmful,
            "--harmless": harmless,
            "--eval-harmful": eval_harmful,
            "--eval-harmless": eval_harmless,
        },
    )
    sets = {
        name: resolve_prompts(text, column, is_harmful, seed)
        for name, text, is_harmful in (
            ("harmful", harmful, True),
            ("harmless", harmless, False),
            ("eval_harmful", eval_harmful, True),
            ("eval_harmless", eval_harmless, False),
        )
    }
    check_pair(sets["harmful"], sets["harmless"])
    check_pair(sets["eval_harmful"], sets["eval_harmless"])
    for find, held in (("harmful", "eval_harmful"), ("harmless", "eval_harmless")):
        _disjoint(sets[find], sets[held])
    loaded = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    if check_weights:  # fail before the dose-response run, not after it
        writer_paths(loaded.adapter)
    base_loaded = None if base is None else load_model(base, dtype=dtype, device=device)
    args = {
        "directions": list(directions),
        "key": key,
        "layer": layer,
        "ks": ks,
        "alpha": alpha,
        "batch_size": batch_size,
        "seed": seed,
        "val_fraction": val_fraction,
        "kl_threshold": kl_threshold,
        "ablation": ablation.value,
        "steering_threshold": parse_threshold(steering_threshold),
        "out": out,
    }
    found = _bases(loaded, base_loaded, sets["harmful"], sets["harmless"], args)
    if ks is None:
        ks = tuple(x for x in DEFAULT_KS if x <= min(b.k_max for b in found))
    band_layers = getattr(bands(loaded.adapter.num_layers), band.value)
    options = DoseOptions(
        ks=ks,
        mode=mode.value,  # type: ignore[arg-type]
        layers=tuple(band_layers) if mode is Mode.band else None,
        n_random=n_random,
        seed=seed,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        ablation=ablation.value,  # type: ignore[arg-type]
    )
    reference, note = None, ""
    if ablation is Ablation.affine:
        # One reference for every basis and null: with `select`, the harmless means at the
        # selected position (those its candidates were scored against), else at the last token.
        reference = args.get("selection_reference") if mode is Mode.all_layers else None
        site = "block inputs" if mode is Mode.all_layers else "block outputs"
        if reference is None:
            reference = harmless_reference(
                loaded,
                list(sets["harmless"]),
                mode.value,  # type: ignore[arg-type]
                batch_size=batch_size,
            )
            note = f"mean {site} of the {len(sets['harmless'])} --harmless prompts, last token"
        else:
            note = (
                f"mean {site} of the selection's harmless training split at template position "
                f"{args['selection_position']}"
            )
    with progress() as bar:
        result = dose_response(
            loaded.model,
            loaded.tokenizer,
            loaded.adapter,
            found,
            list(sets["eval_harmful"]),
            list(sets["eval_harmless"]),
            options,
            progress=bar,
            reference=reference,
            reference_note=note,
        )
    data, figure = result.save(out)
    checks: dict[str, dict[int, float]] = {}
    if check_weights:
        for b in found:
            checks[b.name] = {
                x: weight_check(
                    loaded.model,
                    loaded.tokenizer,
                    loaded.adapter,
                    b.first(x),
                    list(sets["eval_harmful"]),
                    batch_size=batch_size,
                )
                for x in ks
            }
        atomic_write_json(out / "weight_check.json", {"max_abs_logit_diff": checks})
    out_console.print(_result_table(result, checks))
    console.print(f"wrote {data} and {figure}")
