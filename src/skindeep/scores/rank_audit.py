"""The effective-rank audit of one aligned/base pair: collect (cached) activations, rank them.

One collection pass per model and format (aligned chat, aligned raw, base chat fed the aligned
template, base raw), through the activation engine and its content-addressed cache, so a rerun
or a `skindeep audit` of the same pair on the same prompts reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skindeep.activations import cached_collect, labelled_prompts
from skindeep.errors import PromptError, SkindeepError
from skindeep.models import LoadedModel
from skindeep.models.chat import PromptFormat
from skindeep.prompts import PromptSet, check_pair
from skindeep.runtime import ProgressLike
from skindeep.scores.audit import check_compatible, model_info
from skindeep.scores.rank_ablation import RankAblation, rank_ablation
from skindeep.scores.rank_config import RankAuditConfig
from skindeep.scores.rank_pair import (
    NeutralActivations,
    RankGeometry,
    rank_geometry,
    rank_predictors,
)
from skindeep.scores.result import ModelInfo, PromptInfo


@dataclass(frozen=True)
class NeutralPrompts:
    """A neutral concept contrast as two prompt sets (e.g. register en vs fr)."""

    name: str
    first: PromptSet
    second: PromptSet
    classes: tuple[str, str]


@dataclass(frozen=True)
class RankAuditResult:
    """The effective-rank audit of one pair, with what it was computed from."""

    config: RankAuditConfig
    aligned: ModelInfo
    base: ModelInfo
    harmful: PromptInfo
    harmless: PromptInfo
    neutral: tuple[tuple[str, PromptInfo, PromptInfo], ...]
    geometry: RankGeometry
    ablation: RankAblation | None


def organism_neutral_contrasts(n: int = 64, seed: int = 0) -> tuple[NeutralPrompts, ...]:
    """The organism language's neutral contrasts on harmless requests: register (en vs fr) and
    mood (question vs statement), n prompts per class (fewer if the language has fewer)."""
    from skindeep.organisms.language import DEFAULT_LANGUAGE

    def draw(**kw: tuple[str, ...]) -> PromptSet:
        reqs = DEFAULT_LANGUAGE.sample_requests(n, harmful=False, split="all", seed=seed, **kw)
        label = "-".join(v[0] for v in kw.values())
        return PromptSet(f"organism-{label}", tuple(r.text for r in reqs), f"organism: {kw}")

    return (
        NeutralPrompts("register", draw(registers=("en",)), draw(registers=("fr",)), ("en", "fr")),
        NeutralPrompts(
            "mood",
            draw(moods=("question",)),
            draw(moods=("statement",)),
            ("question", "statement"),
        ),
    )


def file_neutral_contrast(first: PromptSet, second: PromptSet) -> NeutralPrompts:
    """A neutral contrast from two prompt sets (real models: any two prompt files)."""
    check_pair(first, second)
    names = (first.name, second.name)
    if names[0] == names[1]:
        names = (f"{names[0]}#1", f"{names[1]}#2")
    return NeutralPrompts("files", first, second, names)


def _collect(
    loaded: LoadedModel,
    sets: dict[str, PromptSet],
    fmt: PromptFormat,
    config: RankAuditConfig,
    progress: ProgressLike,
    template: LoadedModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """[n, L, d] last-token block outputs of labelled prompt sets (cached), and the layers."""
    prompts, labels = labelled_prompts(sets)
    try:
        store = cached_collect(
            loaded, prompts, labels, layers=config.layers, site="block_out", positions="last",
            fmt=fmt, template_tokenizer=None if template is None else template.tokenizer,
            batch_size=config.batch_size, progress=progress, root=config.cache_dir,
            refresh=config.refresh,
        )  # fmt: skip
    except ValueError as exc:  # bad layers, untokenizable prompts: user-fixable
        raise SkindeepError(f"cannot collect activations: {exc}") from exc
    return store.array(), np.asarray(store.layers)


def rank_audit(
    aligned: LoadedModel,
    base: LoadedModel,
    harmful: PromptSet,
    harmless: PromptSet,
    neutral: tuple[NeutralPrompts, ...] = (),
    config: RankAuditConfig | None = None,
    progress: ProgressLike = None,
) -> RankAuditResult:
    """The effective-rank audit: four variants, limits (a)-(c), optionally (b)'s ablation."""
    config = config or RankAuditConfig()
    check_pair(harmful, harmless)
    check_compatible(aligned, base)
    safety = {"harmful": harmful, "harmless": harmless}
    a_chat, layers = _collect(aligned, safety, "chat", config, progress)
    b_chat, _ = _collect(base, safety, "chat", config, progress, template=aligned)
    a_raw = b_raw = None
    if config.raw:
        a_raw, _ = _collect(aligned, safety, "raw", config, progress)
        b_raw, _ = _collect(base, safety, "raw", config, progress)
    is_harmful = np.array([True] * len(harmful) + [False] * len(harmless))
    neutral_acts = []
    for contrast in neutral:
        sets = {contrast.classes[0]: contrast.first, contrast.classes[1]: contrast.second}
        na, _ = _collect(aligned, sets, "chat", config, progress)
        nb, _ = _collect(base, sets, "chat", config, progress, template=aligned)
        first = np.array([True] * len(contrast.first) + [False] * len(contrast.second))
        neutral_acts.append(NeutralActivations(contrast.name, contrast.classes, na, nb, first))
    try:
        geometry = rank_geometry(
            a_chat, b_chat, is_harmful, b_raw, a_raw, neutral_acts, config.eps, layers.tolist()
        )
    except ValueError as exc:
        raise PromptError(f"cannot rank these activations: {exc}") from exc
    ablation = None
    if config.ablate:
        ablation = rank_ablation(
            aligned, a_chat, b_chat, is_harmful, geometry, harmful, harmless, config, progress
        )
    return RankAuditResult(
        config=config,
        aligned=model_info(aligned),
        base=model_info(base),
        harmful=PromptInfo.of(harmful),
        harmless=PromptInfo.of(harmless),
        neutral=tuple((c.name, PromptInfo.of(c.first), PromptInfo.of(c.second)) for c in neutral),
        geometry=geometry,
        ablation=ablation,
    )


def pair_rank_predictors(
    aligned: LoadedModel,
    base: LoadedModel,
    harmful: PromptSet,
    harmless: PromptSet,
    neutral: tuple[NeutralPrompts, ...] = (),
    config: RankAuditConfig | None = None,
) -> dict[str, float]:
    """The rank audit's per-model scalars for the study (geometry only, no generation):
    rho_<variant>, rho_<variant>_centered, cos_<variant>_peak, rho_neutral_<name>, gap_share."""
    cfg = (config or RankAuditConfig()).model_copy(update={"ablate": False})
    return rank_predictors(rank_audit(aligned, base, harmful, harmless, neutral, cfg).geometry)
