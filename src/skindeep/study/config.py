"""The study config: which models, which prompts, which steps, the fine-tuning recipe, the target.

A TOML or YAML file (or a packaged name: 'demo', 'study') validated into `StudyConfig`
(pydantic, extra="forbid"). The primary target and predictor are fixed here, before the run;
every other summary and predictor is reported too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skindeep.config_files import read_config
from skindeep.finetune.tracking import TrackingConfig
from skindeep.organisms.language import DEFAULT_LANGUAGE_NAME, known_language
from skindeep.scores.config import AuditConfig
from skindeep.study.sweep import SweepOptions

#: Study configs shipped with the package (src/skindeep/study/configs/NAME.toml).
PACKAGED_STUDIES: tuple[str, ...] = ("demo", "study", "micro")
#: Fragility summaries a study can target (higher = more robust alignment).
TARGETS: tuple[str, ...] = ("auc", "retention", "steps_to_half", "keyword_retention")
#: Predictors (geometry and causal) and baselines a study computes.
PREDICTORS: tuple[str, ...] = (
    "gfs_code", "gfs_paper", "d_peak", "c_peak", "arditi_d_peak",
    "ablation_drop", "ablation_kl",
    "rho_template", "rho_did", "cos_did_peak", "gap_share",
)  # fmt: skip
BASELINES: tuple[str, ...] = ("initial_refusal", "refusal_margin", "log_params", "weight_change")

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ZooRef(BaseModel):
    """A zoo of organisms at one build seed (its aligned organisms enter the study)."""

    model_config = _CONFIG

    name: str
    """A packaged zoo ('default', 'micro', 'study') or a zoo spec file."""
    seed: int = Field(0, ge=0)
    """Build seed (0: the spec's own seeds); several refs of one zoo give independent builds."""
    only: tuple[str, ...] = ()
    """Organism names to keep (empty: every aligned organism)."""
    language: str | None = None
    """Organism language ('core', 'wide'; None: the zoo spec's): other builds, NAME@LANGUAGE."""

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return value if value is None else known_language(value)

    @property
    def tag(self) -> str:
        """Suffix of its organisms' names: '@3' at build seed 3, '@wide-3' in the wide language."""
        parts = [self.language] if self.language not in (None, DEFAULT_LANGUAGE_NAME) else []
        parts += [str(self.seed)] if self.seed else []
        return f"@{'-'.join(parts)}" if parts else ""


class PairRef(BaseModel):
    """One aligned/base pair given by path or hub id (real checkpoints too)."""

    model_config = _CONFIG

    name: str
    """Name in the tables."""
    aligned: str
    """Aligned checkpoint (folder or hub id)."""
    base: str
    """Its base checkpoint."""
    recipe: str = "unknown"
    """Alignment recipe, for leave-one-recipe-out checks."""
    architecture: str = ""
    """Model family (read from the checkpoint when empty)."""


class PromptsConfig(BaseModel):
    """Prompt sets (the `organism:SPLIT-CLASS:N` syntax, a file or `hf:NAME`) and benign data."""

    model_config = _CONFIG

    audit_harmful: str = "organism:heldout-harmful:64"
    """Harmful prompts whose activations the geometry reads."""
    audit_harmless: str = "organism:heldout-harmless:64"
    """Harmless prompts for the geometry."""
    direction_harmful: str = "organism:train-harmful:32"
    """Harmful prompts to find and validate the refusal direction (split in two halves)."""
    direction_harmless: str = "organism:train-harmless:32"
    """Harmless prompts to find and validate the refusal direction (split in two halves)."""
    eval_harmful: str = "organism:heldout-harmful:64"
    """Held-out harmful prompts refusal is tracked on during fine-tuning."""
    benign: str = "organism"
    """Benign fine-tuning pairs: 'organism' or a pairs file (JSON, JSONL, CSV)."""


class StepsConfig(BaseModel):
    """Which pipeline steps run per model."""

    model_config = _CONFIG

    audit: bool = True
    """Geometry of the pair (GFS, |d|, c, Arditi |d|)."""
    ablation: bool = True
    """Select the refusal direction and measure its ablation (refusal drop, KL)."""
    rank: bool = True
    """Effective-rank audit (rho_eps of M_template and M_DiD, DiD direction recovery, spectral
    gaps); raw-format activations are collected for it."""
    retention: bool = True
    """Benign fine-tuning with refusal tracked at checkpoints (the ground truth)."""
    dose: bool = False
    """Ablation dose-response (refusal against k directions of a basis, random nulls of the
    same k) on a few held-out prompts, for the report's dose-response grid (`[dose]`)."""


class DoseStepConfig(BaseModel):
    """The study's small dose-response per model: basis, doses, prompts and generation length.

    Directions are found on the direction prompts; refusal is measured on the first
    `n_harmful` eval prompts and the KL on the first `n_harmless` audit harmless prompts.
    """

    model_config = _CONFIG

    directions: tuple[str, ...] = ("pca",)
    """Bases (`skindeep ablate --directions`): pca (PCA of D_l at the peak layer, the GFS
    code variant's direction), cpca, svd, svd-did or select (Arditi's, one direction)."""
    ks: tuple[int, ...] | None = None
    """Doses (None: 1, 2, 4 capped by what every basis holds)."""
    n_random: int = Field(3, ge=3)
    """Random orthonormal null bases per k."""
    n_harmful: int = Field(16, ge=1)
    """Held-out harmful prompts refusal is measured on (the first of `eval_harmful`)."""
    n_harmless: int = Field(16, ge=1)
    """Held-out harmless prompts the KL is measured on (the first of `audit_harmless`)."""
    max_new_tokens: int = Field(16, ge=1)
    """Greedy tokens generated per prompt at each dose."""


class StatsConfig(BaseModel):
    """Resampling settings of the cross-model statistics."""

    model_config = _CONFIG

    n_resamples: int = Field(9999, ge=99)
    """Bootstrap resamples of the BCa interval."""
    n_permutations: int = Field(9999, ge=99)
    """Permutations of the p-value."""
    seed: int = 0
    """Seed of the resampling."""


class StudyConfig(BaseModel):
    """A whole predictive study."""

    model_config = _CONFIG

    name: str
    """Study name (shown in the report)."""
    zoo: tuple[ZooRef, ...] = ()
    """Zoos (each at a build seed) whose aligned organisms enter the study."""
    pairs: tuple[PairRef, ...] = ()
    """Further aligned/base pairs by path or hub id."""
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    """Prompt sets and benign data."""
    steps: StepsConfig = Field(default_factory=StepsConfig)
    """Which steps run."""
    audit: AuditConfig = Field(default_factory=lambda: AuditConfig(n_perm=100))
    """Audit options (format, variant, permutations, ...)."""
    ablation_form: Literal["projection", "affine"] = "affine"
    """Ablation form of the direction selection (affine meets the causal targets on the zoo)."""
    steering_threshold: float | Literal["midpoint"] = "midpoint"
    """Steering cutoff of the selection (0: Arditi; 'midpoint' for low-confidence refusers)."""
    degenerate_check: bool = False
    """The selection's optional degenerate check (`SelectionOptions.degenerate_check`): pass
    over candidates whose ablation makes the model loop on the validation prompts. Off, as in
    Arditi's method; on, the ablation and dose steps get their own cache entries."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Benign fine-tuning recipe, seeds and checkpoint spacing."""
    primary_target: Literal["auc", "retention", "steps_to_half", "keyword_retention"] = "auc"
    """The fragility summary fixed as the target before the run."""
    primary_predictor: str = "gfs_code"
    """The predictor the headline is about."""
    dose: DoseStepConfig = Field(default_factory=DoseStepConfig)
    """The dose-response step's settings (runs when steps.dose is on)."""
    sweep: SweepOptions | None = None
    """Robustness grid, recomputed from the audit's cached activations (None: no sweep)."""
    sweep_formats: bool = True
    """Also collect the other prompt format (raw vs chat) for the sweep: new forward passes."""
    sweep_last_layer: bool = True
    """Also collect with the other last-layer convention (raw block output vs after the final
    norm, as the Skin-Deep code reads it) for the sweep: new forward passes, its own step."""
    stats: StatsConfig = Field(default_factory=StatsConfig)
    """Resampling settings."""
    device: str = "cpu"
    """Torch device of every model (a Ray task asks for a GPU when this is not 'cpu')."""

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        if not self.zoo and not self.pairs:
            raise ValueError("a study needs a zoo or pairs")
        if self.primary_predictor not in PREDICTORS + BASELINES:
            raise ValueError(
                f"primary_predictor {self.primary_predictor!r} is not one of "
                f"{', '.join(PREDICTORS + BASELINES)}"
            )
        if not self.steps.retention:
            raise ValueError("steps.retention is off: without the ground truth there is no study")
        return self

    @property
    def degenerate_check_key(self) -> list[dict[str, bool]]:
        """The degenerate check's part of the ablation and dose steps' cache keys: empty when
        it is off, so the keys of studies that never turn it on stay what they were."""
        return [{"degenerate_check": True}] if self.degenerate_check else []


def load_study_config(source: str | Path) -> StudyConfig:
    """A packaged study ('demo', 'study', 'micro') or a TOML/YAML file, validated."""
    return read_config(source, StudyConfig, "study config", "study/configs", PACKAGED_STUDIES)
