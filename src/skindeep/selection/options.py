"""The options of Arditi's direction selection (defaults: the paper's) and its filter codes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from skindeep.errors import SkindeepError
from skindeep.interventions.ablation import AblationForm

#: Filter codes a discarded candidate can carry.
REASONS: dict[str, str] = {
    "zero": "the difference of means is zero (e.g. the embedding layer at a template token)",
    "layer": "layer >= max_layer_fraction * L",
    "kl": "mean KL on harmless prompts under ablation > kl_threshold",
    "steering": "steering score on harmless prompts <= steering_threshold",
    "degenerate": "under its ablation, the share of degenerate (or empty) greedy generations on "
    "harmful validation prompts > max_degenerate (the optional degenerate check)",
}


class SelectionError(SkindeepError):
    """No candidate direction survived the filters, or the inputs cannot be used."""


class SelectionOptions(BaseModel):
    """Filters and batching of Arditi's selection (defaults: the paper's).

    >>> SelectionOptions(steering_threshold="midpoint").kl_threshold
    0.1
    >>> SelectionOptions(degenerate_check=True, max_degenerate=0.05).max_checked
    5
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
    degenerate_check: bool = Field(
        False,
        description="after the filters, generate greedily on the harmful validation prompts "
        "with each candidate ablated (rank order, all layers, this form) and pass over those "
        "whose ablated model loops: the next-token KL cannot see a loop that starts later",
    )
    max_degenerate: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="degenerate check: reject a candidate whose share of degenerate or empty "
        "generations exceeds this",
    )
    degenerate_check_tokens: int = Field(
        32, ge=1, description="degenerate check: greedy tokens generated per prompt"
    )
    max_checked: int = Field(
        5,
        ge=1,
        description="degenerate check: candidates generated from, in rank order, before the "
        "selection gives up (no direction)",
    )

    @model_validator(mode="after")
    def _check_settings_need_the_check(self) -> SelectionOptions:
        """A degenerate-check setting without the check would silently do nothing."""
        changed = [
            name
            for name in ("max_degenerate", "degenerate_check_tokens", "max_checked")
            if getattr(self, name) != type(self).model_fields[name].default
        ]
        if changed and not self.degenerate_check:
            raise ValueError(
                f"degenerate_check is off, so {', '.join(changed)} would do nothing: turn "
                "degenerate_check on"
            )
        return self


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
