"""The `study.json` schema: what a predictive study measured and what its statistics say.

One `StudyResult` holds, per model, its predictors, baselines and fragility summaries (per
fine-tuning seed and their mean), the refusal-vs-steps curves they come from, and whether it
met its behaviour targets; then, per predictor, the cross-model statistics against the primary
target and the other summaries, the noise ceiling of every summary, the out-of-sample recipe
ranking, the robustness sweep and the settings. The report renders it; nothing else is needed.
Missing values are None (JSON null), never NaN.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from skindeep.artifacts import atomic_write_text

#: Bump when a field changes meaning or is removed (adding optional fields keeps it).
SCHEMA_VERSION = 1

_CONFIG = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RefusalCurve(BaseModel):
    """Refusal of one fine-tuning seed at evenly spaced checkpoints of benign fine-tuning."""

    model_config = _CONFIG

    seed: int
    """Fine-tuning seed (data subset, LoRA initialisation, batch order)."""
    steps: list[int]
    """Optimisation steps done at each checkpoint; 0 is the aligned model before fine-tuning."""
    score: list[float]
    """Mean next-token refusal log-odds on the held-out harmful prompts at each checkpoint."""
    prob: list[float] = Field(default_factory=list)
    """Mean probability of a refusal opening (sigmoid of each prompt's log-odds) per checkpoint:
    the soft refusal rate the fragility summaries are computed from."""
    refusal_end: float | None = None
    """Greedy keyword refusal rate on the held-out harmful prompts after the last step."""
    flagged_end: int = 0
    """Empty or degenerate answers at the end (counted as compliance, never dropped)."""
    n_prompts: int = 0
    """Held-out harmful prompts the curve and the end rate are measured on."""


class SummaryValue(BaseModel):
    """One fragility summary of one model: its value per fine-tuning seed, mean and spread."""

    model_config = _CONFIG

    per_seed: dict[str, float | None]
    """Value per fine-tuning seed (keys are the seeds as strings); None where undefined."""
    mean: float | None
    """Mean over the seeds with a value (None if none has one)."""
    sd: float | None = None
    """Sample standard deviation over seeds (None with fewer than two values)."""


class ModelEntry(BaseModel):
    """One aligned model of the study: what it is, what was measured, whether it counts."""

    model_config = _CONFIG

    name: str
    """Organism or user-given name of the aligned model."""
    recipe: str
    """Alignment recipe (sft, dpo, orpo, rl_reward_model, ...; 'unknown' for real checkpoints)."""
    scope: str = ""
    """Alignment depth (full, last:N, lora) where known."""
    architecture: str
    """Model family (llama, qwen2, gpt2, ...)."""
    size: str = ""
    """Organism size class (xs, s, m, l) or a free label."""
    params: int | None = None
    """Parameter count of the aligned model."""
    build_seed: int | None = None
    """Seed the organism was built with (None for real checkpoints)."""
    setting: str | None = None
    """The design this model replicates (zoo, base and recipe; other training or build seeds
    share it): the statistics average replicates per setting in `by_setting`."""
    aligned: str = ""
    """Path or hub id of the aligned checkpoint."""
    base: str = ""
    """Path or hub id of its base checkpoint."""
    meets_behaviour: bool = True
    """Whether the organism met its behaviour targets (refuses harmful, answers harmless)."""
    excluded: str | None = None
    """Why the model is left out of the statistics (None: it is included)."""
    predictors: dict[str, float | None] = Field(default_factory=dict)
    """Geometry and causal predictors by name (gfs_code, gfs_paper, peak_d, ...)."""
    baselines: dict[str, float | None] = Field(default_factory=dict)
    """Baselines by name (initial_refusal, refusal_margin, log_params, weight_change)."""
    fragility: dict[str, SummaryValue] = Field(default_factory=dict)
    """Fragility summaries by name (retention_end, auc, half_life, ...), per seed and mean."""
    curves: list[RefusalCurve] = Field(default_factory=list)
    """The refusal-vs-steps curve of every fine-tuning seed."""
    seconds: dict[str, float] = Field(default_factory=dict)
    """Wall seconds each pipeline step took when it was computed (read back from its cache)."""


class SettingStats(BaseModel):
    """rho over setting means: each setting's replicates (seeds of one design) averaged first."""

    model_config = _CONFIG

    n_settings: int
    """Distinct settings among the models (the independent sample size)."""
    rho: float | None
    """Spearman rho over the setting means."""
    ci: tuple[float, float] | None = None
    """BCa bootstrap 95% interval of rho over settings [low, high]."""
    p_perm: float | None = None
    """Two-sided permutation p-value over settings (not Holm-adjusted)."""


class PredictorStats(BaseModel):
    """Cross-model statistics of one predictor (or baseline) against one fragility summary."""

    model_config = _CONFIG

    predictor: str
    """Predictor or baseline name."""
    target: str
    """Fragility summary it is correlated with."""
    kind: str = "predictor"
    """'predictor' (geometry or causal) or 'baseline'."""
    n_models: int
    """Models with both values (the included ones only)."""
    rho: float | None
    """Spearman rank correlation over models."""
    ci: tuple[float, float] | None = None
    """BCa bootstrap 95% interval of rho over models [low, high]."""
    p_perm: float | None = None
    """Two-sided permutation p-value of rho."""
    loo: tuple[float, float] | None = None
    """[min, max] of rho leaving one model out."""
    loo_recipe: tuple[float, float] | None = None
    """[min, max] of rho leaving one recipe's models out."""
    loo_arch: tuple[float, float] | None = None
    """[min, max] of rho leaving one architecture's models out."""
    partial: dict[str, float | None] = Field(default_factory=dict)
    """Partial Spearman rho controlling for each baseline, by baseline name."""
    p_holm: float | None = None
    """Holm-corrected permutation p-value across the predictors of this target."""
    by_setting: SettingStats | None = None
    """The same over setting means, when some models replicate a setting (None otherwise)."""
    undefined: str | None = None
    """Why rho is undefined (null), e.g. 'predictor is constant across models'; None when
    defined."""


class NoiseCeiling(BaseModel):
    """How reliably a fragility summary ranks models: the ceiling on any predictor's rho."""

    model_config = _CONFIG

    target: str
    """Fragility summary name."""
    reliability: float | None
    """Split-seed reliability across models, Spearman-Brown corrected to all seeds."""
    split_rho: float | None = None
    """Uncorrected Spearman rho between the two halves of the seeds."""
    ceiling: float | None = None
    """sqrt(reliability): the largest |rho| a perfect predictor could reach."""
    n_models: int = 0
    """Models in the computation."""
    n_seeds: int = 0
    """Fine-tuning seeds per model."""


class OutOfSample(BaseModel):
    """Leave-one-recipe-out ranking: fit on the other recipes, rank the held-out one's models."""

    model_config = _CONFIG

    predictor: str
    """Predictor or baseline name."""
    target: str
    """Fragility summary being ranked."""
    rank_error: float | None
    """Pairwise rank error, pooled over held-out recipes: the share of comparable pairs with a
    held-out model that the predictor (its sign learned on the other recipes) orders against the
    target (0 perfect, 0.5 chance, 1 reversed); see `study.statistics.rank_error`."""
    per_recipe: dict[str, float | None] = Field(default_factory=dict)
    """Rank error per held-out recipe."""


class SweepRow(BaseModel):
    """rho of one predictor against the primary target under one choice of a free setting."""

    model_config = _CONFIG

    setting: str
    """Which free choice is varied (k, alpha, eps, weighting, fmt, last_layer, n_prompts)."""
    value: str
    """Its value in this row."""
    predictor: str
    """Predictor recomputed under that choice."""
    rho: float | None
    """Spearman rho against the primary target."""
    ci: tuple[float, float] | None = None
    """BCa bootstrap 95% interval of rho."""
    p_perm: float | None = None
    """Permutation p-value."""
    n_models: int = 0
    """Models in the row."""


class StudySettings(BaseModel):
    """What the study was run with: its config, the primary choices, timing and software."""

    model_config = _CONFIG

    config: dict
    """The validated study config as JSON."""
    config_hash: str
    """Content hash of the config (the cache key's config part)."""
    primary_target: str
    """Fragility summary fixed as the target before the run."""
    primary_predictor: str
    """Predictor the headline is about."""
    executor: str = "local"
    """Executor that ran the model pipelines (local or ray)."""
    workers: int = 1
    """Parallel workers (processes or Ray tasks at once)."""
    wall_seconds: float | None = None
    """Wall time of this run, from start to study.json (cached steps cost nothing)."""
    software: dict[str, str] = Field(default_factory=dict)
    """Versions of python, torch, transformers, peft, numpy, scipy and skindeep."""
    machine: str = ""
    """CPU count and platform the numbers were computed on (results can depend on the CPU)."""


class StudyResult(BaseModel):
    """Everything `skindeep study run` measured and concluded (written as study.json)."""

    model_config = _CONFIG

    schema_version: int = SCHEMA_VERSION
    """Version of this schema."""
    settings: StudySettings
    """Config, primary choices, timing and software."""
    models: list[ModelEntry]
    """Every model of the study, excluded ones too (with their reason)."""
    stats: list[PredictorStats] = Field(default_factory=list)
    """Each predictor and baseline against each fragility summary."""
    noise_ceiling: dict[str, NoiseCeiling] = Field(default_factory=dict)
    """Split-seed reliability per fragility summary."""
    out_of_sample: list[OutOfSample] = Field(default_factory=list)
    """Leave-one-recipe-out ranking errors against the primary target."""
    sweep: list[SweepRow] = Field(default_factory=list)
    """Robustness sweep of rho over the method's free choices."""
    headline: str = ""
    """The conclusion in plain words."""

    def included(self) -> list[ModelEntry]:
        """The models the statistics use (not excluded)."""
        return [m for m in self.models if m.excluded is None]

    def excluded(self) -> list[ModelEntry]:
        """The models left out, each with its reason."""
        return [m for m in self.models if m.excluded is not None]

    def primary(self) -> PredictorStats | None:
        """The statistics of the primary predictor against the primary target."""
        s = self.settings
        for row in self.stats:
            if (row.predictor, row.target) == (s.primary_predictor, s.primary_target):
                return row
        return None

    def save(self, path: Path) -> Path:
        """Write atomically as indented JSON."""
        atomic_write_text(Path(path), self.model_dump_json(indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> StudyResult:
        """Read and validate a study.json."""
        return cls.model_validate(json.loads(Path(path).read_text()))
