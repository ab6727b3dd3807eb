"""The study's dose-response step: refusal against k ablated directions, with random nulls.

A small run of the `skindeep ablate` experiment (`skindeep.dose.ablate`) per model: the basis
is found on the study's direction prompts, refusal is measured on a few held-out harmful
prompts (refused, complied and degenerate counted apart) and the KL on a few held-out harmless
ones. dose.json is written into the step's folder; the runner copies it to models/NAME/, where
the report draws its dose-response grid. Diagnostic only: no ablated model is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skindeep.artifacts import atomic_write_json, json_ready
from skindeep.dose.registry import BASE_USERS, builder_name
from skindeep.prompts import resolve_prompt_spec
from skindeep.study.config import StudyConfig

#: Bump when the dose step's record or dose.json changes for the same inputs.
VERSION = "1"


def dose_settings(config: StudyConfig) -> list[Any]:
    """The part of the config the dose-response depends on (its cache key)."""
    p = config.prompts
    return [VERSION, config.dose.model_dump(mode="json"), config.ablation_form,
            config.steering_threshold, p.direction_harmful, p.direction_harmless,
            p.eval_harmful, p.audit_harmless, config.audit.batch_size,
            *config.degenerate_check_key]  # fmt: skip


def run_dose(models: Any, config: StudyConfig, folder: Path, done: dict) -> dict:
    """Find the bases, measure refusal against k, write `folder`/dose.json; return a summary."""
    from skindeep.dose import AblateConfig, ablate
    from skindeep.selection import SelectionOptions

    p, d = config.prompts, config.dose
    harmful = resolve_prompt_spec(p.direction_harmful, harmful=True)
    harmless = resolve_prompt_spec(p.direction_harmless, harmful=False)
    eval_harmful = list(resolve_prompt_spec(p.eval_harmful, harmful=True))[: d.n_harmful]
    eval_harmless = list(resolve_prompt_spec(p.audit_harmless, harmful=False))[: d.n_harmless]
    cfg = AblateConfig(
        directions=d.directions, ks=d.ks, ablation=config.ablation_form, n_random=d.n_random,
        max_new_tokens=d.max_new_tokens, batch_size=config.audit.batch_size,
        selection=SelectionOptions(
            steering_threshold=config.steering_threshold,
            degenerate_check=config.degenerate_check,
        ),
    )  # fmt: skip
    uses_base = any(builder_name(s) in BASE_USERS and s != "svd" for s in d.directions)
    run = ablate(
        models.get("aligned"), harmful, harmless, eval_harmful, eval_harmless, cfg,
        base=models.get("base") if uses_base else None,
    )  # fmt: skip
    path = Path(folder) / "dose.json"
    atomic_write_json(path, run.dose.to_json())
    dose = run.dose
    return json_ready(
        {  # a rate with no denominator (every output degenerate) becomes None
            "dose_json": str(path),
            "bases": [{"name": b.name, "source": b.source, "layer": b.layer} for b in run.bases],
            "ks": list(dose.options.ks),
            "baseline_rate": dose.baseline.refusal.rate,
            "rates": {c.name: [pt.refusal.rate for pt in c.points] for c in dose.curves},
        }
    )
