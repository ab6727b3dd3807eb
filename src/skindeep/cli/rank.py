"""`skindeep rank-audit`: the effective-rank audit of a pair; `skindeep calibrate`: its MLP
calibration experiment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from skindeep.cli._common import (
    check_model_source,
    console,
    is_organism,
    out_folder,
    progress,
    require_real_data,
)
from skindeep.errors import ConfigError

if TYPE_CHECKING:
    from skindeep.scores.rank_audit import RankAuditResult

out = Console(width=None if sys.stdout.isatty() else 160)
"""Tables to stdout, wide enough for every column when written to a file or CI log."""


def _parse_ks(text: str) -> tuple[int, ...]:
    """'1,3,5' -> (1, 3, 5); ConfigError naming the flag otherwise."""
    try:
        ks = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ConfigError(f"--ks {text!r}: expected comma-separated integers, e.g. 1,3,5") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--ks {text!r}: doses must be positive integers")
    return ks


def rank_audit_command(
    aligned: Annotated[
        str, typer.Option("--aligned", "-a", help="Aligned model: hub id or folder")
    ],
    base: Annotated[str, typer.Option("--base", "-b", help="Its base model: hub id or folder")],
    harmful: Annotated[
        str, typer.Option(help="Harmful prompts: file, hf:NAME or organism:heldout|train[:N]")
    ] = "organism:heldout",
    harmless: Annotated[
        str, typer.Option(help="Harmless prompts: file, hf:NAME or organism:heldout|train[:N]")
    ] = "organism:heldout",
    neutral: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Two prompt files of a neutral contrast (organisms: en/fr, mood)"),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results", callback=out_folder)
    ] = Path("rank-audit"),
    eps: Annotated[float, typer.Option(help="Energy tolerance of rank_eps")] = 0.05,
    layers: Annotated[str | None, typer.Option(help="Layers, e.g. 0,2,-1 (default all)")] = None,
    raw: Annotated[bool, typer.Option(help="Collect raw format (M_naive, M_aligned)")] = True,
    ablation: Annotated[bool, typer.Option(help="Run limit (b): band ablation")] = True,
    ablation_matrix: Annotated[str, typer.Option(help="template or did")] = "template",
    ablation_layer: Annotated[int | None, typer.Option(help="SVD layer (default GFS peak)")] = None,
    ks: Annotated[str, typer.Option(help="Cumulative doses k")] = "1,3,5,10,20,50",
    n_alone: Annotated[int, typer.Option(min=1, help="Directions ablated alone")] = 10,
    n_random: Annotated[int, typer.Option(min=3, help="Random null draws per k")] = 3,
    n_ablation_prompts: Annotated[
        int | None, typer.Option(min=1, help="Harmful prompts per dose (default all)")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens")] = 100,
    n_prompts: Annotated[int | None, typer.Option(min=1, help="Prompts per class")] = None,
    column: Annotated[str | None, typer.Option(help="Column of tabular prompt files")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of organism prompts and nulls")] = 0,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto")] = "cpu",
    refresh: Annotated[bool, typer.Option(help="Recollect cached activations")] = False,
) -> None:
    """Effective-rank audit: rank_eps/rho of M_naive, M_template, M_aligned, M_DiD per layer,
    |cos(u_1, Arditi)|, neutral contrasts, spectral gaps and SVD-direction ablation.

    Writes rank_audit.json, rank_layers/rank_gaps/rank_ablation .csv (and .parquet) and
    rank_spectra/rank_profiles/rank_ablation .png into --out; activations are cached.
    """
    from pydantic import ValidationError

    from skindeep.cli.audit import parse_layers, resolve_prompts
    from skindeep.models import load_model
    from skindeep.prompts import check_pair, resolve_prompt_spec
    from skindeep.report.rank_files import write_rank_audit
    from skindeep.scores.rank_audit import (
        file_neutral_contrast,
        organism_neutral_contrasts,
        rank_audit,
    )
    from skindeep.scores.rank_config import RankAuditConfig

    check_model_source(aligned, "--aligned")
    check_model_source(base, "--base")
    require_real_data(aligned, {"--harmful": harmful, "--harmless": harmless})
    if ablation_matrix not in ("template", "did"):
        raise ConfigError(f"--ablation-matrix {ablation_matrix!r}: choose template or did")
    try:
        config = RankAuditConfig(
            eps=eps, layers=parse_layers(layers), raw=raw, batch_size=batch_size, ablate=ablation,
            ablation_matrix=ablation_matrix, ablation_layer=ablation_layer, ks=_parse_ks(ks),
            n_alone=n_alone, n_random=n_random, n_ablation_prompts=n_ablation_prompts,
            max_new_tokens=max_new_tokens, seed=seed, refresh=refresh,
        )  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]).replace("_", "-") if first["loc"] else "option"
        raise ConfigError(f"--{field}: {first['msg']}") from None
    harmful_set = resolve_prompts(harmful, True, n_prompts, column, seed)
    harmless_set = resolve_prompts(harmless, False, n_prompts, column, seed)
    check_pair(harmful_set, harmless_set)
    if neutral is not None:
        first, second = (resolve_prompt_spec(t, None, column, seed, n_prompts) for t in neutral)
        contrasts = (file_neutral_contrast(first, second),)
    elif is_organism(aligned):
        contrasts = organism_neutral_contrasts(n_prompts or 64, seed)
    else:
        contrasts = ()
        console.print("[yellow]no --neutral files: limit (a) (neutral contrasts) is skipped[/]")
    aligned_model = load_model(aligned, dtype=dtype, device=device)
    base_model = load_model(base, dtype=dtype, device=device)
    with progress() as bar:
        result = rank_audit(
            aligned_model, base_model, harmful_set, harmless_set, contrasts, config, bar
        )
    files = write_rank_audit(result, out_dir)
    out.print(summary_table(result))
    console.print(f"results in {out_dir}: {', '.join(p.name for p in files)}")


def summary_table(result: RankAuditResult) -> Table:
    """Mean rho per variant (uncentered, centered) and |cos| at the GFS peak, plus neutrals."""
    g = result.geometry
    table = Table(title=f"effective rank (eps={g.eps}), GFS peak layer {g.peak_layer}")
    for col in ("matrix", "n", "mean rho", "mean rho_min", "mean rho centered", "|cos| at peak"):
        table.add_column(col, justify="left" if col == "matrix" else "right")
    rows = [(f"M_{name}", v) for name, v in g.variants.items()]
    rows += [(f"neutral {nr.name} ({'/'.join(nr.classes)})", nr.template) for nr in g.neutral]
    for label, v in rows:
        m = v.means()
        cos = v.cos[g.peak_index]
        table.add_row(
            label, str(v.n_columns), f"{m['rho']:.4f}", f"{m['rho_min']:.3f}",
            f"{m['rho_centered']:.4f}", "-" if label.startswith("neutral") else f"{cos:.3f}",
        )  # fmt: skip
    table.caption = (
        f"spectral gap holds on {sum(r.holds for r in g.gaps)}/{len(g.gaps)} pairs; base contrast"
        f" |m_base|/|m_aligned - m_base| at the peak {g.base_contrast[g.peak_index]:.2f}"
    )
    return table


def _parse_floats(text: str, flag: str) -> tuple[float, ...]:
    """'0,5,50' -> (0.0, 5.0, 50.0); ConfigError naming the flag otherwise."""
    try:
        values = tuple(float(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from None
    if len(values) < 2 or min(values) < 0:
        raise ConfigError(f"{flag} {text!r}: need at least two values, all >= 0")
    return values


def calibrate_command(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results", callback=out_folder)
    ] = Path("calibration"),
    lambdas: Annotated[str, typer.Option(help="Regulariser weights swept")] = "0,0.5,5,50,500",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per lambda")] = 3,
    target: Annotated[
        str, typer.Option(help="Regularise the 'modification' matrices M_l or the 'weights'")
    ] = "modification",
    base_steps: Annotated[int, typer.Option(min=1, help="Base training steps")] = 1200,
    align_steps: Annotated[int, typer.Option(min=1, help="Alignment steps")] = 600,
    eps: Annotated[float, typer.Option(help="Energy tolerance of rank_eps")] = 0.05,
) -> None:
    """SPEC's MLP calibration: does the effective rank of a safety change predict its robustness?

    Trains a 20-128-128-128 ReLU network on 1[x4 x5 - x6 x7 > 0], aligns it (label 0 in the
    region x1, x2, x3 > 1) under lambda * (stable-rank + column-orthogonality) regularisation,
    and reports rho per layer, safety and task accuracy, and safety accuracy after ablating the
    top-k directions of the modification matrix. Writes calibration.json, CSVs and a figure.
    """
    import time

    import torch

    from skindeep.calibration import summarise, sweep, verdict
    from skindeep.report.calibration_files import calibration_table, write_calibration

    lams = _parse_floats(lambdas, "--lambdas")
    if target not in ("weights", "modification"):
        raise ConfigError(f"--target {target!r}: choose weights or modification")
    if not 0 < eps < 1:
        raise ConfigError(f"--eps {eps}: must lie in (0, 1)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest and leaves the machine free
    start = time.perf_counter()
    try:
        with progress() as bar:
            task = bar.add_task("calibration runs", total=len(lams) * seeds)
            runs = sweep(
                lams, range(seeds), eps, base_steps, align_steps, target=target,  # type: ignore[arg-type]
                tick=lambda: bar.advance(task),
            )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    summary = summarise(runs)
    found = verdict(summary)
    meta = {
        "lambdas": list(lams), "seeds": seeds, "target": target, "base_steps": base_steps,
        "align_steps": align_steps, "eps": eps, "seconds": round(time.perf_counter() - start, 1),
        "torch_threads": 1,
    }  # fmt: skip
    files = write_calibration(runs, summary, found, meta, out_dir)
    out.print(calibration_table(summary))
    out.print(found["text"])
    console.print(f"results in {out_dir}: {', '.join(p.name for p in files)}")
