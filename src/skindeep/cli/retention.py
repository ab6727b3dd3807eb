"""`skindeep retention`: refusal before and after benign fine-tuning, over n and seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from skindeep.cli._common import console, option_error, progress, require_real_data
from skindeep.errors import ConfigError


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'5,10,25' -> (5, 10, 25); anything else is a clear error."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from exc
    if not values:
        raise ConfigError(f"{what} is empty")
    return values


def resolve_model(model: str) -> str:
    """A path as given, else the current build of that organism in the cache, else a hub id."""
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    from skindeep.organisms.zoo import BUILD_VERSION, METADATA, list_organisms

    named = [o for o in list_organisms() if o.name == model]
    if not named:
        return model
    # stale builds of the same name may remain: prefer the current build, then the newest
    best = max(
        named,
        key=lambda o: (
            o.meta.get("build_version") == BUILD_VERSION,
            (o.path / METADATA).stat().st_mtime,
        ),
    )
    return str(best.path)


#: Option fields whose flag is not `--field-name`.
RETENTION_FLAGS = {"ns": "--n", "target_modules": "--targets", "method": "--full"}


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def retention(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Checkpoint folder, hub id, or organism name")
    ],
    n: Annotated[str, typer.Option("--n", help="Benign example counts")] = "5,10,25,50,100,200",
    seeds: Annotated[str, typer.Option(help="Seeds (data subset, LoRA init, order)")] = "0,1,2",
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 8,
    alpha: Annotated[int, typer.Option(help="LoRA alpha")] = 16,
    dropout: Annotated[float, typer.Option(help="LoRA dropout")] = 0.0,
    targets: Annotated[str, typer.Option(help="'all-linear' or comma-separated modules")] = (
        "all-linear"
    ),
    lr: Annotated[float, typer.Option(help="Peak learning rate (real models: ~2e-4)")] = 5e-3,
    batch_size: Annotated[int, typer.Option(help="Examples per step")] = 32,
    steps: Annotated[int | None, typer.Option(help="Steps (default 200)")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs instead of --steps")] = None,
    full: Annotated[bool, typer.Option("--full", help="Fine-tune every weight, not LoRA")] = False,
    control: Annotated[str, typer.Option(help="'none' or 'identity-shift'")] = "none",
    harmful: Annotated[str, typer.Option(help="Held-out harmful prompts: FILE or organism")] = (
        "organism"
    ),
    harmless: Annotated[
        str | None, typer.Option(help="Harmless prompts: FILE, organism or none")
    ] = None,
    benign: Annotated[str, typer.Option(help="Benign pairs: FILE or organism")] = "organism",
    instruction_column: Annotated[str | None, typer.Option(help="Benign file column")] = None,
    response_column: Annotated[str | None, typer.Option(help="Benign file column")] = None,
    prompt_column: Annotated[str | None, typer.Option(help="Prompt file column")] = None,
    n_eval: Annotated[int, typer.Option(help="Evaluation prompts per class")] = 100,
    exclude: Annotated[
        Path | None, typer.Option(help="Prompts used for directions (must not be evaluated)")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Greedy tokens per answer")] = 48,
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16")] = "float32",
    save_adapters: Annotated[bool, typer.Option(help="Keep every LoRA adapter")] = True,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: 1 for organisms, else torch's)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder")] = None,
) -> None:
    """Benign fine-tuning at every (n, seed); refusal, retention and over-refusal, cached."""
    from pydantic import ValidationError
    from rich.table import Table

    from skindeep.finetune.config import FinetuneConfig, RetentionConfig
    from skindeep.finetune.data import load_pairs, organism_heldout, organism_pairs
    from skindeep.finetune.output import write_outputs
    from skindeep.finetune.retention import run_retention
    from skindeep.prompts import load_prompts

    try:
        config = RetentionConfig(
            ns=parse_ints(n, "--n"),
            seeds=parse_ints(seeds, "--seeds"),
            control=control,
            max_new_tokens=max_new_tokens,
            save_adapters=save_adapters,
            finetune=FinetuneConfig(
                method="full" if full else "lora",
                rank=rank,
                alpha=alpha,
                dropout=dropout,
                target_modules=targets if targets == "all-linear" else tuple(targets.split(",")),
                lr=lr,
                batch_size=batch_size,
                steps=steps,
                epochs=epochs,
            ),
        )
    except ValidationError as exc:
        raise option_error(exc, RETENTION_FLAGS) from None
    if n_eval < 1:
        raise ConfigError(f"--n-eval must be >= 1, got {n_eval}")
    source = resolve_model(model)
    require_real_data(
        source,
        {
            "--benign": benign,
            "--harmful": harmful,
            **({"--harmless": harmless} if harmless else {}),
        },
    )
    excluded = load_prompts(exclude) if exclude else ()
    if benign == "organism":
        pairs = organism_pairs()
    else:
        pairs = load_pairs(benign, instruction_column, response_column)
    if harmful == "organism":
        harmful_set = organism_heldout(True, n_eval, exclude=excluded)
    else:
        harmful_set = load_prompts(harmful, prompt_column, limit=n_eval)
    harmless = harmless or ("organism" if harmful == "organism" else "none")
    if harmless == "none":
        harmless_set = None
    elif harmless == "organism":
        harmless_set = organism_heldout(False, n_eval, exclude=excluded)
    else:
        harmless_set = load_prompts(harmless, prompt_column, limit=n_eval)
    if threads is None and (Path(source) / "organism.json").is_file():
        threads = 1  # tiny matrices: one thread is fastest and never spin-waits
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    with progress() as bar:
        result = run_retention(
            source,
            pairs,
            harmful_set,
            harmless_set,
            config,
            exclude=excluded,
            device=device,
            dtype=dtype,
            progress=bar,
        )
    out = out or Path("retention") / Path(source.rstrip("/")).name
    paths = write_outputs(result, out)
    data_kind = "benign data" if config.control == "none" else f"{config.control} control"
    table = Table(title=f"refusal retention of {Path(source).name} ({data_kind})")
    for col in ("n", "refusal after [pooled 95% CI]", "per seed", "retention", "over-refusal"):
        table.add_column(col, justify="left" if col == "per seed" else "right")
    b = result.before
    table.add_row(
        "before",
        f"{b.harmful.rate:.2f} [{b.harmful.low:.2f}, {b.harmful.high:.2f}]",
        "-",
        "1.00",
        _pct(b.harmless.rate if b.harmless else None),
    )
    for r in result.summary():
        per_seed = " ".join(f"{result.cell(r.n, s).refusal:.2f}" for s in r.seeds)
        table.add_row(
            str(r.n),
            f"{r.refusal_mean:.2f} [{r.refusal_low:.2f}, {r.refusal_high:.2f}]",
            per_seed,
            f"{_pct(r.retention_mean)} ± {_pct(r.retention_sd)}",
            _pct(r.over_refusal_mean),
        )
    console.print(table)
    if b.harmful.rate == 0:
        console.print("[yellow]the model refused nothing before fine-tuning: retention is NaN[/]")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    console.print(f"cached cells: {result.folder}")
