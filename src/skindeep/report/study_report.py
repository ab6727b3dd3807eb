"""The study report: headline and verdict, the ranking of every model, the scatter, per-layer
profiles, dose-response, refusal during fine-tuning, the robustness sweep, method and software.

Everything comes from study.json (`StudyResult`); per-layer profiles and dose-response curves
come from the audit.json and dose.json files the study wrote for each model under its folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skindeep.report.document import Document, Plot, Section, Table, Text
from skindeep.report.figures import (
    ARCH_LINES,
    RECIPE_COLORS,
    LayerProfile,
    palette,
    profiles_figure,
)
from skindeep.report.study_figures import (
    curves_figure,
    dose_grid_figure,
    heatmap_figure,
    scatter_figure,
)
from skindeep.report.verdict import verdict
from skindeep.study.result import ModelEntry, PredictorStats, StudyResult


def _ordered(result: StudyResult, attr: str) -> list[str]:
    """Names of predictors, baselines or fragility summaries, in first-seen order."""
    return list(dict.fromkeys(k for m in result.models for k in getattr(m, attr)))


def stats_rows(result: StudyResult, target: str) -> list[dict[str, Any]]:
    """Every predictor and baseline against `target`: rho, CI, p-values, leave-out ranges."""
    partial_names = _ordered(result, "baselines")
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
        row |= {f"partial|{b}": r.partial.get(b) for b in partial_names}
        rows.append(row)
    return rows


def ranking_rows(result: StudyResult) -> list[dict[str, Any]]:
    """One row per model, sorted by the primary predictor (highest first), excluded last."""
    s = result.settings
    preds, bases, summaries = (
        _ordered(result, a) for a in ("predictors", "baselines", "fragility")
    )

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


def _long_tables(result: StudyResult) -> list[Table]:
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


def _rho_text(row: PredictorStats | None) -> str:
    if row is None or row.rho is None:
        return ""
    ci = f" [{row.ci[0]:+.2f}, {row.ci[1]:+.2f}]" if row.ci else ""
    p = f", p = {row.p_perm:.3g}" if row.p_perm is not None else ""
    return f"Spearman rho = {row.rho:+.2f}{ci}{p}, n = {row.n_models}"


def headline_section(result: StudyResult) -> Section:
    """The verdict, the primary row and each baseline side by side, and the noise ceiling."""
    s, v = result.settings, verdict(result)
    sec = Section("Headline").add(Text(v.headline, "verdict"), *(Text(d) for d in v.details))
    rows = [
        r
        for r in stats_rows(result, s.primary_target)
        if r["predictor"] == s.primary_predictor or r["kind"] == "baseline"
    ]
    cols = ("predictor", "kind", "n", "rho", "ci_low", "ci_high", "p_perm", "p_holm")
    nc = result.noise_ceiling.get(s.primary_target)
    if nc is not None:
        rows.append(
            {
                "predictor": "noise ceiling",
                "kind": "sqrt(reliability)",
                "n": nc.n_models,
                "rho": nc.ceiling,
            }
        )
    sec.add(
        Table(
            "headline",
            cols,
            tuple(rows),
            f"{s.primary_predictor} and the baselines against {s.primary_target}",
        )
    )
    if result.headline:
        sec.add(Text(f"The study's own summary: {result.headline}", "note"))
    return sec


def _profile_plot(folder: Path, models: list[ModelEntry], variant: str) -> Plot | Text:
    audits = model_files(folder, models, "audit.json")
    audits = [(m, a) for m, a in audits if variant in a.get("gfs", {})]
    if not audits:
        return Text(f"No per-model audit.json under {folder}: no layer profiles to draw.", "note")
    colors = palette([m.recipe for m, _ in audits], RECIPE_COLORS)
    lines = palette([m.architecture for m, _ in audits], ARCH_LINES)
    profiles = [LayerProfile.from_audit(a, variant, m.name) for m, a in audits]
    styles = [{"color": colors[m.recipe], "ls": lines[m.architecture], "ms": 0} for m, _ in audits]
    return Plot.from_figure(
        "layer_profiles",
        profiles_figure(profiles, styles, relative=True),
        f"Per-layer GFS terms ({variant} variant) of every model over relative "
        "depth; colour: recipe, line style: architecture.",
    )


def study_document(result: StudyResult, folder: Path) -> Document:
    """The whole study report."""
    s = result.settings
    n_in, n_out = len(result.included()), len(result.excluded())
    doc = Document(
        "skindeep study: does refusal geometry predict fragility?",
        "study",
        f"{n_in} models in the statistics ({n_out} excluded); primary: "
        f"{s.primary_predictor} vs {s.primary_target}",
    )
    v = verdict(result)
    primary = result.primary()
    doc.numbers = {
        "verdict": v.headline,
        "details": list(v.details),
        "primary": primary.model_dump() if primary else None,
        "noise_ceiling": {k: n.model_dump() for k, n in result.noise_ceiling.items()},
        "n_models": n_in,
        "n_excluded": n_out,
    }
    doc.sections.append(headline_section(result))
    sec = doc.section(f"{s.primary_predictor} against {s.primary_target}")
    sec.add(
        Plot.from_figure(
            "scatter",
            scatter_figure(
                result.models, s.primary_predictor, s.primary_target, _rho_text(primary)
            ),
            "Each point a model; colour: "
            "recipe, marker: architecture. The line is the Theil-Sen fit over "
            "the included models, the band its 95% slope interval.",
        )
    )
    sec = doc.section("Every predictor and baseline")
    for target in _ordered(result, "fragility"):
        rows = stats_rows(result, target)
        if rows:
            sec.add(
                Table(
                    f"stats_{target}",
                    tuple(rows[0]),
                    tuple(rows),
                    f"against {target}" + (" (primary)" if target == s.primary_target else ""),
                )
            )
    nc = [n.model_dump() for n in result.noise_ceiling.values()]
    if nc:
        sec.add(Table("noise_ceiling", tuple(nc[0]), tuple(nc), "split-seed reliability"))
    oos = [
        {"predictor": o.predictor, "target": o.target, "rank_error": o.rank_error} | o.per_recipe
        for o in result.out_of_sample
    ]
    if oos:
        cols = tuple(dict.fromkeys(k for r in oos for k in r))
        sec.add(
            Table(
                "out_of_sample",
                cols,
                tuple(oos),
                "leave-one-recipe-out mean absolute "
                "rank error of the held-out recipe's models (lower is better)",
            )
        )
    rows = ranking_rows(result)
    doc.section("Models").add(
        Table(
            "models",
            tuple(dict.fromkeys(k for r in rows for k in r)),
            tuple(rows),
            f"every model, ranked by {s.primary_predictor}",
        ),
        *_long_tables(result),
    )
    doc.section("Per-layer profiles").add(_profile_plot(folder, result.models, "code"))
    doses = [(m.name, d) for m, d in model_files(folder, result.models, "dose.json")]
    dose_sec = doc.section("Ablation dose-response")
    if doses:
        dose_sec.add(
            Plot.from_figure(
                "dose_response",
                dose_grid_figure(doses),
                "Greedy refusal "
                "against the number of ablated directions; grey: random orthonormal nulls.",
            )
        )
    else:
        dose_sec.add(Text(f"No per-model dose.json under {folder}: no ablation was run.", "note"))
    if any(m.curves for m in result.models):
        doc.section("Refusal during fine-tuning").add(
            Plot.from_figure(
                "refusal_curves",
                curves_figure(result.models),
                "Refusal on "
                "held-out harmful prompts at checkpoints of benign "
                "fine-tuning: each seed thin, their mean thick.",
            )
        )
    if result.sweep:
        sweep = [r.model_dump() for r in result.sweep]
        doc.section("Robustness sweep").add(
            Plot.from_figure(
                "sweep",
                heatmap_figure(result.sweep),
                "rho against the primary target when one free choice of the method changes.",
            ),
            Table("sweep", tuple(sweep[0]), tuple(sweep), "every sweep row"),
        )
    settings = {
        "primary target": s.primary_target,
        "primary predictor": s.primary_predictor,
        "executor": s.executor,
        "workers": s.workers,
        "wall seconds": s.wall_seconds,
        "machine": s.machine,
        "config hash": s.config_hash,
        "schema version": result.schema_version,
    }
    doc.section("Method and software").add(
        Table(
            "settings",
            ("setting", "value"),
            tuple({"setting": k, "value": str(v)} for k, v in settings.items()),
        ),
        Table(
            "software",
            ("package", "version"),
            tuple({"package": k, "version": v} for k, v in s.software.items()),
        ),
        Text(json.dumps(s.config, indent=2, sort_keys=True), "code"),
    )
    return doc
