"""The study report: headline and verdict, the ranking of every model, the scatter, per-layer
profiles, dose-response, refusal during fine-tuning, the robustness sweep, method and software.

Everything comes from study.json (`StudyResult`), except per-layer profiles and dose-response
curves: those come from the audit.json and dose.json files the study leaves in a folder named
after each model under its own folder (models/NAME/).
"""

from __future__ import annotations

import json
from pathlib import Path

from skindeep.report.document import Document, Plot, Section, Table, Text
from skindeep.report.figures import (
    ARCH_LINES,
    RECIPE_COLORS,
    palette,
    profiles_figure,
)
from skindeep.report.study_figures import (
    curves_figure,
    dose_grid_figure,
    heatmap_figure,
    scatter_figure,
)
from skindeep.report.study_tables import (
    long_tables,
    model_files,
    model_profiles,
    ordered,
    ranking_rows,
    rho_matrix,
    stats_rows,
)
from skindeep.report.verdict import verdict
from skindeep.study.result import ModelEntry, PredictorStats, StudyResult


def flat_config(config: dict, prefix: str = "") -> list[str]:
    """The study config as sorted 'section.key = value' lines (values as compact JSON)."""
    lines = []
    for key in sorted(config):
        value = config[key]
        if isinstance(value, dict) and value:
            lines += flat_config(value, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key} = {json.dumps(value, separators=(', ', ': '))}")
    return lines


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
    cols = ("predictor", "kind", "n", "rho", "ci_low", "ci_high", "p_perm", "p_holm", "note")
    if any(r["settings"] is not None for r in rows):
        cols += ("settings", "rho_setting", "ci_setting", "p_setting")
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


def _profile_blocks(folder: Path, models: list[ModelEntry]) -> list[Plot | Table | Text]:
    pairs = model_profiles(folder, models)
    if not pairs:
        return [
            Text(
                "No models/NAME/audit.json under the study folder: no layer profiles to draw.",
                "note",
            )
        ]
    colors = palette([m.recipe for m, _ in pairs], RECIPE_COLORS)
    lines = palette([m.architecture for m, _ in pairs], ARCH_LINES)
    styles = [{"color": colors[m.recipe], "ls": lines[m.architecture], "ms": 0} for m, _ in pairs]
    rows = [
        {"model": m.name, "layer": layer, "d": p.d[i], "c": p.c[i],
         "contribution": p.contribution[i]}
        for m, p in pairs
        for i, layer in enumerate(p.layers)
    ]  # fmt: skip
    missing = [m.name for m in models if m.name not in {x.name for x, _ in pairs}]
    note = [Text(f"No per-layer terms for: {', '.join(missing)}.", "note")] if missing else []
    return [
        Plot.from_figure(
            "layer_profiles",
            profiles_figure([p for _, p in pairs], styles, relative=True),
            "Per-layer GFS terms (code variant) of every model over relative depth; colour: "
            "recipe, line style: architecture. Missing points: layers alignment left unchanged.",
        ),
        *note,
        Table("layer_profiles", tuple(rows[0]), tuple(rows), show=False),
    ]


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
    targets = ordered(result, "fragility")
    others = [t for t in targets if t != s.primary_target]
    for target in [s.primary_target, *others]:
        rows = stats_rows(result, target)
        if rows:
            primary = target == s.primary_target
            caption = f"against {target}" + (" (primary target)" if primary else "")
            sec.add(Table(f"stats_{target}", tuple(rows[0]), tuple(rows), caption, show=primary))
    by_target = rho_matrix(result, others)
    if by_target:
        sec.add(Table("rho_other_targets", ("predictor", "kind", *others), tuple(by_target),
                      "Spearman rho against the other fragility summaries (their full statistics "
                      "are in tables/stats_TARGET.parquet)"))  # fmt: skip
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
        *long_tables(result),
    )
    doc.section("Per-layer profiles").add(*_profile_blocks(folder, result.models))
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
        dose_sec.add(
            Text(
                "No models/NAME/dose.json under the study folder: this study ran no "
                "dose-response (its ablation step scores the selected direction at "
                "k = 1 only, as the ablation_drop and ablation_kl predictors).",
                "note",
            )
        )
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
        Text("\n".join(flat_config(s.config)), "code"),
    )
    return doc


def render_study(result: StudyResult, out: Path) -> tuple[Path, ...]:
    """Write the study report into `out` (beside study.json); return the files written.

    Per-model audit.json and dose.json files under `out` feed the profile and dose figures.
    """
    from skindeep.report.write import write_report

    files = write_report(study_document(result, Path(out)), Path(out))
    return (files.html, files.markdown, files.json, *files.tables, *files.figures)
