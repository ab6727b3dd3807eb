"""`run_study`: models -> cached pipelines (local pool or Ray) -> statistics -> study.json.

Writes `study.json` (the `StudyResult`), `models.parquet` (one row per model) and
`stats.parquet` (one row per predictor and target) into the output folder, atomically, then
states the conclusion in plain words, whatever it is.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pandas as pd

from skindeep.artifacts import atomic_write_text, staged_file
from skindeep.cache import content_hash
from skindeep.study.assemble import cross_model, model_entry, sweep_rows
from skindeep.study.config import StudyConfig
from skindeep.study.executors import Executor, run_local, run_ray
from skindeep.study.jobs import model_jobs
from skindeep.study.result import StudyResult, StudySettings


def software() -> dict[str, str]:
    """Versions of the packages the numbers depend on."""
    out = {"python": platform.python_version()}
    for name in ("skindeep", "torch", "transformers", "peft", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def headline(result: StudyResult) -> str:
    """The conclusion in plain words: does the primary predictor beat the baselines?"""
    s = result.settings
    n_in, n_out = len(result.included()), len(result.excluded())
    row = result.primary()
    ceiling = result.noise_ceiling.get(s.primary_target)
    rel = ceiling.reliability if ceiling else None
    rel_text = "undefined" if rel is None else f"{rel:.2f}"
    head = (
        f"{n_in} models in the statistics ({n_out} excluded). Target: {s.primary_target} "
        f"(higher = refusal survives benign fine-tuning better); its split-seed reliability is "
        f"{rel_text}."
    )
    if row is None or row.rho is None:
        return head + f" {s.primary_predictor} could not be correlated with it (too few values)."
    ci = f"[{row.ci[0]:.2f}, {row.ci[1]:.2f}]" if row.ci else "[undefined]"
    p = "undefined" if row.p_holm is None else f"{row.p_holm:.3f}"
    sign = "more fragile" if row.rho < 0 else "less fragile"
    text = (
        f" {s.primary_predictor}: Spearman rho = {row.rho:+.2f}, 95% CI {ci}, Holm p = {p} "
        f"(a higher {s.primary_predictor} goes with {sign} models)."
    )
    if s.primary_predictor.startswith("gfs") and row.rho > 0:
        text += " That is the opposite of the Skin-Deep claim (higher GFS = more fragile)."
    baselines = [
        r for r in result.stats
        if r.target == s.primary_target and r.kind == "baseline" and r.rho is not None
    ]  # fmt: skip
    if baselines:
        best = max(baselines, key=lambda r: abs(r.rho or 0.0))
        verdict = "beats" if abs(row.rho) > abs(best.rho or 0.0) else "does NOT beat"
        text += (
            f" The strongest baseline, {best.predictor}, has rho = {best.rho:+.2f}: "
            f"{s.primary_predictor} {verdict} it."
        )
    significant = row.p_holm is not None and row.p_holm < 0.05
    if not significant:
        text += " The correlation is not significant after Holm correction."
    return head + text


def _parquet(result: StudyResult, out: Path) -> None:
    """models.parquet and stats.parquet beside study.json (atomic folder swap per file)."""
    rows = []
    for m in result.models:
        row = {
            "name": m.name, "recipe": m.recipe, "scope": m.scope,
            "architecture": m.architecture, "size": m.size, "params": m.params,
            "build_seed": m.build_seed, "excluded": m.excluded,
        }  # fmt: skip
        row.update({f"predictor.{k}": v for k, v in m.predictors.items()})
        row.update({f"baseline.{k}": v for k, v in m.baselines.items()})
        row.update({f"fragility.{k}": v.mean for k, v in m.fragility.items()})
        rows.append(row)
    stats = [r.model_dump(mode="json") for r in result.stats]
    for name, table in (("models", rows), ("stats", stats)):
        frame = pd.DataFrame(table)
        for col in frame.columns:
            if frame[col].map(lambda v: isinstance(v, (list, dict))).any():
                frame[col] = frame[col].map(repr)
        with staged_file(out / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)


def run_study(
    config: StudyConfig,
    out: Path,
    *,
    executor: Executor = "local",
    workers: int = 1,
    address: str | None = None,
    root: Path | None = None,
    report: Callable[[str, int, int], None] | None = None,
) -> StudyResult:
    """Run (or resume) every model's pipeline, then the statistics; write the artifacts."""
    began = time.perf_counter()
    jobs = model_jobs(config, workers=workers)
    todo = [j for j in jobs if j.meets_behaviour]
    if executor == "ray":
        records = run_ray(todo, config, address, root, report)
    else:
        records = run_local(todo, config, workers, root, report)
    by_name = {j.name: r for j, r in zip(todo, records, strict=True)}
    models = [model_entry(j, by_name.get(j.name)) for j in jobs]
    stats, oos, ceilings = cross_model(models, config)
    points = {
        j.name: [pt for step in ("sweep", "sweep_last_layer")
                 for pt in (r.get(step) or {}).get("points", [])]
        for j, r in zip(todo, records, strict=True) if "points" in (r.get("sweep") or {})
    }  # fmt: skip
    sweep = sweep_rows(models, points, config) if config.sweep is not None else []
    settings = StudySettings(
        config=config.model_dump(mode="json"),
        config_hash=content_hash(config.model_dump(mode="json")),
        primary_target=config.primary_target,
        primary_predictor=config.primary_predictor,
        executor=executor,
        workers=workers,
        wall_seconds=round(time.perf_counter() - began, 1),
        software=software(),
        machine=f"{os.cpu_count()} CPUs, {platform.platform()}, device {config.device}",
    )
    result = StudyResult(
        settings=settings, models=models, stats=stats, noise_ceiling=ceilings,
        out_of_sample=oos, sweep=sweep,
    )  # fmt: skip
    result = result.model_copy(update={"headline": headline(result)})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _model_files(todo, records, out)
    result.save(out / "study.json")
    _parquet(result, out)
    return result


def _model_files(jobs: list, records: list[dict], out: Path) -> None:
    """Each model's audit.json and dose.json under out/models/NAME/ (the report draws its layer
    profiles and dose-response grid from them)."""
    for job, record in zip(jobs, records, strict=True):
        for step, key, name in (("audit", "audit_json", "audit.json"),
                                ("dose", "dose_json", "dose.json")):  # fmt: skip
            src = (record.get(step) or {}).get(key)
            if src and Path(src).is_file():
                atomic_write_text(out / "models" / job.name / name, Path(src).read_text())
