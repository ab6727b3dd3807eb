"""The options of Arditi's direction selection (defaults: the paper's) and its filter codes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from skindeep.errors import SkindeepError
from skindeep.interventions.ablation import AblationForm

#: Filter codes a discarded candidate can carry.
REASONS: dict[str, str] = {
    "zero": "the difference of means is zero (e.g. the embedding layer at a template token)",
    "layer": "layer >= max_layer_fraction * L",
    "kl": "mean KL on harmless prompts under ablation > kl_threshold",
    "steering": "steering score on harmless prompts <= steering_threshold",
}


class SelectionError(SkindeepError):
    """No candidate direction survived the filters, or the inputs cannot be used."""


class SelectionOptions(BaseModel):
    """Filters and batching of Arditi's selection (defaults: the paper's).

    >>> SelectionOptions(steering_threshold="midpoint").kl_threshold
    0.1
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_layer_fraction: float = Field(
        0.8, gt=0, le=1, description="discard candidates at layers l >= max_layer_fraction * L"
    )
    kl_threshold: float = Field(
        0.1,
        ge=0,
        description="discard candidates whose ablation moves harmless next-token distributions "
        "more than this (nats, on the validation split)",
    )
    steering_threshold: float | Literal["midpoint"] = Field(
        0.0,
        description="keep only candidates whose steering score (harmless refusal log-odds) "
        "exceeds this; 'midpoint': halfway from the harmless to the harmful baseline score, for "
        "models that refuse greedily with low confidence, where no candidate can pass 0",
    )
    steering_coeff: float = Field(
        1.0, description="multiple of the raw difference-of-means vector added when steering"
    )
    batch_size: int = Field(16, ge=1, description="prompts per forward batch")
    candidates_per_pass: int = Field(
        8, ge=1, description="candidates in one forward pass (rows = batch_size * this)"
    )
    ablation: AblationForm = Field(
        "projection",
        description="'projection': Arditi's h - r r^T h; 'affine': h - r r^T (h - mu_l), mu_l the "
        "mean harmless block input at the candidate's position (Marshall et al. 2024)",
    )


def steering_cutoff(
    opts: SelectionOptions, baseline_harmful: float, baseline_harmless: float
) -> float:
    """The numeric steering threshold: the option itself, or the midpoint of the baselines."""
    if opts.steering_threshold == "midpoint":
        return 0.5 * (baseline_harmful + baseline_harmless)
    return float(opts.steering_threshold)


def filter_reasons(
    layer: int,
    norm: float,
    kl: float,
    steering: float,
    num_layers: int,
    opts: SelectionOptions,
    steering_min: float,
) -> tuple[str, ...]:
    """Codes of the filters a candidate fails, in REASONS order."""
    if norm == 0.0:
        return ("zero",)
    failed = {
        "layer": layer >= opts.max_layer_fraction * num_layers,
        "kl": not kl <= opts.kl_threshold,
        "steering": not steering > steering_min,
    }
    return tuple(code for code, bad in failed.items() if bad)
