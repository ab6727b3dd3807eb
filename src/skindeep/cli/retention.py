"""`skindeep retention`: refusal before and after benign fine-tuning, over n and seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from skindeep.cli._common import (
    check_model_source,
    console,
    default_of,
    option_error,
    out_folder,
    progress,
    require_real_data,
)
from skindeep.errors import ConfigError
from skindeep.finetune.config import DEFAULT_STEPS, FinetuneConfig, RetentionConfig


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
RETENTION_FLAGS = {
    "ns": "--n",
    "target_modules": "--targets",
    "method": "--full",
    "steps": "--steps",
    "epochs": "--epochs",
}


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def _ints(values: tuple[int, ...]) -> str:
    """(5, 10) -> '5,10': a config default as the flag spells it."""
    return ",".join(str(v) for v in values)


def result_table(result: Any) -> Any:
    """Before, then per n: pooled refusal, per-seed refusal, retention and over-refusal."""
    from rich.table import Table

    source, config = result.model, result.config
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
    return table


def retention(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Checkpoint folder, hub id, or organism name")
    ],
    n: Annotated[str, typer.Option("--n", help="Benign example counts")] = _ints(
        default_of(RetentionConfig, "ns")
    ),
    seeds: Annotated[str, typer.Option(help="Seeds (data subset, LoRA init, order)")] = _ints(
        default_of(RetentionConfig, "seeds")
    ),
    rank: Annotated[int, typer.Option(help="LoRA rank")] = default_of(FinetuneConfig, "rank"),
    alpha: Annotated[int, typer.Option(help="LoRA alpha")] = default_of(FinetuneConfig, "alpha"),
    dropout: Annotated[float, typer.Option(help="LoRA dropout")] = default_of(
        FinetuneConfig, "dropout"
    ),
    targets: Annotated[str, typer.Option(help="'all-linear' or comma-separated modules")] = str(
        default_of(FinetuneConfig, "target_modules")
    ),
    lr: Annotated[float, typer.Option(help="Peak learning rate (real models: ~2e-4)")] = (
        default_of(FinetuneConfig, "lr")
    ),
    batch_size: Annotated[int, typer.Option(help="Examples per step")] = default_of(
        FinetuneConfig, "batch_size"
    ),
    steps: Annotated[int | None, typer.Option(help=f"Steps (default {DEFAULT_STEPS})")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs instead of --steps")] = None,
    full: Annotated[bool, typer.Option("--full", help="Fine-tune every weight, not LoRA")] = False,
    control: Annotated[str, typer.Option(help="'none' or 'identity-shift'")] = default_of(
        RetentionConfig, "control"
    ),
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
    max_new_tokens: Annotated[int, typer.Option(help="Greedy tokens per answer")] = default_of(
        RetentionConfig, "max_new_tokens"
    ),
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16")] = "float32",
    save_adapters: Annotated[bool, typer.Option(help="Keep every LoRA adapter")] = default_of(
        RetentionConfig, "save_adapters"
    ),
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: 1 for organisms, else torch's)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder", callback=out_folder)] = None,
) -> None:
    """Benign fine-tuning at every (n, seed); refusal, retention and over-refusal, cached."""
    from pydantic import ValidationError

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
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    check_model_source(model)

    from skindeep.finetune.experiment import retention_experiment
    from skindeep.finetune.output import write_outputs

    source = resolve_model(model)
    specs = {"--benign": benign, "--harmful": harmful, "--harmless": harmless or "none"}
    require_real_data(source, {flag: v for flag, v in specs.items() if v != "none"})
    if threads is None and (Path(source) / "organism.json").is_file():
        threads = 1  # tiny matrices: one thread is fastest and never spin-waits
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with progress() as bar:
        result = retention_experiment(
            source, config, benign=benign, harmful=harmful, harmless=harmless,
            instruction_column=instruction_column, response_column=response_column,
            prompt_column=prompt_column, n_eval=n_eval, exclude=exclude, device=device,
            dtype=dtype, progress=bar,
        )  # fmt: skip
    out = out or Path("retention") / Path(source.rstrip("/")).name
    paths = write_outputs(result, out)
    console.print(result_table(result))
    if result.before.harmful.rate == 0:
        console.print(
            "[yellow]retention is undefined: the model refused none of the harmful prompts "
            "before fine-tuning, so there is no refusal to retain (shown as '-'); read the "
            "refusal after fine-tuning instead[/]"
        )
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    console.print(f"cached cells: {result.folder}")
