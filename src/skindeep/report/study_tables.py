"""Rows of the study report's tables, from a `StudyResult`: statistics per target, the model
ranking, per-seed fragility and curve points, and per-model files found under the study folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skindeep.report.document import Table
from skindeep.report.figures import LayerProfile
from skindeep.study.result import ModelEntry, StudyResult


def ordered(result: StudyResult, attr: str) -> list[str]:
    """Names of predictors, baselines or fragility summaries, in first-seen order."""
    return list(dict.fromkeys(k for m in result.models for k in getattr(m, attr)))


def stats_rows(result: StudyResult, target: str) -> list[dict[str, Any]]:
    """Every predictor and baseline against `target`: rho, CI, p-values, leave-out ranges."""
    partial_names = ordered(result, "baselines")
    rows = []
    for r in (r for r in result.stats if r.target == target):
        row = {
            "predictor": r.predictor,
            "kind": r.kind,
            "n": r.n_models,
            "rho": r.rho,
            "ci_low": r.ci[0] if r.ci else None,
            "ci_high": r.ci[1] if r.ci else None,
            "p_perm": r.p_perm,
            "p_holm": r.p_holm,
            "loo_min": r.loo[0] if r.loo else None,
            "loo_max": r.loo[1] if r.loo else None,
            "loo_recipe": list(r.loo_recipe) if r.loo_recipe else None,
            "loo_arch": list(r.loo_arch) if r.loo_arch else None,
        }
        level = r.by_setting  # replicates of one setting (seeds of one design) counted once
        row |= {"settings": level.n_settings if level else None,
                "rho_setting": level.rho if level else None,
                "ci_setting": list(level.ci) if level and level.ci else None,
                "p_setting": level.p_perm if level else None}  # fmt: skip
        row |= {f"partial|{b}": r.partial.get(b) for b in partial_names}
        row["note"] = f"rho undefined: {r.undefined}" if r.undefined else ""
        rows.append(row)
    return rows


def rho_matrix(result: StudyResult, targets: list[str]) -> list[dict[str, Any]]:
    """One row per predictor or baseline: its rho against each of `targets`."""
    rows: dict[str, dict[str, Any]] = {}
    for r in result.stats:
        if r.target in targets:
            rows.setdefault(r.predictor, {"predictor": r.predictor, "kind": r.kind})[r.target] = (
                r.rho
            )
    return list(rows.values())


def ranking_rows(result: StudyResult) -> list[dict[str, Any]]:
    """One row per model, sorted by the primary predictor (highest first), excluded last."""
    s = result.settings
    preds, bases, summaries = (ordered(result, a) for a in ("predictors", "baselines", "fragility"))

    def key(m: ModelEntry) -> tuple[bool, float]:
        v = m.predictors.get(s.primary_predictor)
        return (m.excluded is not None, -(v if v is not None else float("-inf")))

    rows = []
    for i, m in enumerate(sorted(result.models, key=key), start=1):
        row: dict[str, Any] = {
            "rank": i if m.excluded is None else None,
            "model": m.name,
            "recipe": m.recipe,
            "scope": m.scope,
            "arch": m.architecture,
            "size": m.size,
            "params": m.params,
        }
        row |= {p: m.predictors.get(p) for p in preds} | {b: m.baselines.get(b) for b in bases}
        for name in summaries:
            v = m.fragility.get(name)
            row[f"{name} mean"] = v.mean if v else None
            row[f"{name} sd"] = v.sd if v else None
            if name == s.primary_target and v:
                row[f"{name} per seed"] = " / ".join(
                    "-" if x is None else f"{x:.3g}" for x in v.per_seed.values()
                )
        row["included"] = m.excluded or "yes"
        rows.append(row)
    return rows


def long_tables(result: StudyResult) -> list[Table]:
    """Per-seed fragility and every curve point, as data tables (files only)."""
    seeds = [
        {"model": m.name, "summary": name, "seed": seed, "value": value}
        for m in result.models
        for name, v in m.fragility.items()
        for seed, value in v.per_seed.items()
    ]
    points = [
        {"model": m.name, "seed": c.seed, "step": step, "score": score,
         "prob": c.prob[i] if i < len(c.prob) else None}
        for m in result.models
        for c in m.curves
        for i, (step, score) in enumerate(zip(c.steps, c.score, strict=True))
    ]  # fmt: skip
    return [
        Table(
            "fragility_per_seed", ("model", "summary", "seed", "value"), tuple(seeds), show=False
        ),
        Table(
            "refusal_curves", ("model", "seed", "step", "score", "prob"), tuple(points), show=False
        ),
    ]


def model_files(
    folder: Path, models: list[ModelEntry], filename: str
) -> list[tuple[ModelEntry, dict]]:
    """(model, JSON) for each model with a `filename` in a folder named after it under `folder`.

    A file belongs to a model when a folder on its path (relative to `folder`) is the model's
    name, or, for audit.json, when its aligned source is the model's checkpoint.
    """
    found: dict[str, dict] = {}
    for path in sorted(folder.rglob(filename)):
        parts = set(path.relative_to(folder).parts[:-1])
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        source = (
            data.get("models", {}).get("aligned", {}).get("source")
            if filename == "audit.json"
            else None
        )
        for m in models:
            if m.name in parts or (source and m.aligned and Path(source) == Path(m.aligned)):
                found.setdefault(m.name, data)
    return [(m, found[m.name]) for m in models if m.name in found]


def model_profiles(folder: Path, models: list[ModelEntry]) -> list[tuple[ModelEntry, LayerProfile]]:
    """Per-layer GFS terms (code variant) of each model, from the audit.json the study wrote
    under its folder (models/NAME/audit.json)."""
    return [
        (m, LayerProfile.from_audit(audit, "code", m.name))
        for m, audit in model_files(folder, models, "audit.json")
        if "code" in audit.get("gfs", {})
    ]
