"""The study's conclusion in plain words, derived from its statistics and nothing else.

The verdict says whether the primary predictor ranks models beyond chance, whether it beats
the best baseline, how close it gets to the target's noise ceiling and how many models stand
behind it; it says so whatever the numbers are.
"""

from __future__ import annotations

from dataclasses import dataclass

from skindeep.study.result import PredictorStats, StudyResult

#: Significance level of the verdict's "beyond chance" (on the Holm-corrected p when present).
LEVEL = 0.05
#: Below this many models a correlation is called tentative.
FEW_MODELS = 10


@dataclass(frozen=True)
class Verdict:
    """One headline sentence and the sentences that qualify it."""

    headline: str
    details: tuple[str, ...]


def _ci(row: PredictorStats) -> str:
    return f" (95% CI [{row.ci[0]:+.2f}, {row.ci[1]:+.2f}])" if row.ci else ""


def significant(row: PredictorStats) -> bool:
    """p below LEVEL (Holm-corrected where given) and, when there is a CI, it excludes 0."""
    p = row.p_holm if row.p_holm is not None else row.p_perm
    if p is None or p >= LEVEL:
        return False
    return row.ci is None or row.ci[0] > 0 or row.ci[1] < 0


def baselines(result: StudyResult, target: str) -> list[PredictorStats]:
    """Baseline rows against `target` that have a rho."""
    return [
        r for r in result.stats if r.kind == "baseline" and r.target == target and r.rho is not None
    ]


def verdict(result: StudyResult) -> Verdict:
    """The plain-words conclusion about the primary predictor against the primary target."""
    s = result.settings
    pred, target = s.primary_predictor, s.primary_target
    row = result.primary()
    if row is None or row.rho is None:
        n = row.n_models if row else 0
        return Verdict(
            f"No verdict: {pred} has no correlation with {target} ({n} models have both values).",
            (),
        )
    p_text = "" if row.p_perm is None else f", permutation p = {row.p_perm:.3g}"
    if row.p_holm is not None:
        p_text += f" (Holm-corrected {row.p_holm:.3g})"
    sign = "higher" if row.rho > 0 else "lower"
    if significant(row):
        head = (
            f"{pred} ranks the {row.n_models} models by {target} beyond chance: "
            f"rho = {row.rho:+.2f}{_ci(row)}{p_text}; a higher {pred} goes with a {sign} "
            f"{target}."
        )
    elif row.p_perm is not None and row.p_perm < LEVEL and row.p_holm is not None:
        family = [r for r in result.stats if r.kind == "predictor" and r.target == target]
        k = sum(1 for r in family if r.p_perm is not None)
        head = (
            f"{pred} does not rank the {row.n_models} models by {target} beyond chance once "
            f"corrected for testing {k} predictor{'s' * (k != 1)}: "
            f"rho = {row.rho:+.2f}{_ci(row)}{p_text}."
        )
    else:
        head = (
            f"{pred} does not rank the {row.n_models} models by {target} beyond chance: "
            f"rho = {row.rho:+.2f}{_ci(row)}{p_text}."
        )
    details = []
    if row.by_setting is not None and row.by_setting.rho is not None:
        b = row.by_setting
        ci = f", 95% CI [{b.ci[0]:+.2f}, {b.ci[1]:+.2f}]" if b.ci else ""
        p = f", permutation p = {b.p_perm:.3g}" if b.p_perm is not None else ""
        details.append(
            f"The {row.n_models} models replicate {b.n_settings} settings (other training or "
            f"build seeds of one design); counting each setting once, rho = {b.rho:+.2f}{ci}{p}."
        )
    base = baselines(result, target)
    if base:
        best = max(base, key=lambda r: abs(r.rho or 0.0))
        if abs(row.rho) > abs(best.rho or 0.0):
            text = (
                f"{pred} has a larger |rho| than every baseline (the best, {best.predictor}, "
                f"has rho = {best.rho:+.2f})."
            )
            if row.ci and row.ci[0] <= (best.rho or 0.0) <= row.ci[1]:
                text += " The baseline's rho lies inside its interval: not a clear win."
        else:
            text = (
                f"{pred} does not beat {best.predictor}, which alone reaches rho = "
                f"{best.rho:+.2f} against {pred}'s {row.rho:+.2f}."
            )
        details.append(text)
        partial = row.partial.get(best.predictor)
        if partial is not None:
            details.append(
                f"Controlling for {best.predictor}, {pred}'s partial rho is {partial:+.2f}."
            )
    else:
        details.append("No baseline was measured against this target: nothing to beat.")
    nc = result.noise_ceiling.get(target)
    if nc is not None and nc.ceiling:
        share = abs(row.rho) / nc.ceiling
        reach = (
            "is at the ceiling (sampling noise can carry it above)"
            if share >= 1
            else f"reaches {share:.0%} of what a perfect predictor could"
        )
        text = (
            f"The target's noise ceiling is {nc.ceiling:.2f} (split-seed reliability "
            f"{nc.reliability:.2f} over {nc.n_seeds} seeds): |rho| {reach}."
        )
        if nc.ceiling < 0.5:
            text += " The target itself ranks models poorly: no predictor could score well."
        details.append(text)
    elif nc is not None:
        details.append(
            f"The target's reliability could not be measured ({nc.n_seeds} seeds): "
            "the correlation has no ceiling to compare with."
        )
    if row.n_models < FEW_MODELS:
        details.append(f"Only {row.n_models} models: any conclusion is tentative.")
    n_out = len(result.excluded())
    if n_out:
        details.append(f"{n_out} model(s) missed their behaviour targets and are left out.")
    return Verdict(head, tuple(details))
