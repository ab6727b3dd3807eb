"""The dose-response options and the ablation experiment's config, validated on construction."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skindeep.interventions.ablation import AblationForm
from skindeep.selection.options import SelectionOptions

MIN_NULL_DRAWS = 3
"""Fewest random null bases per dose (SPEC: at least 3 draws)."""
DEFAULT_KS: tuple[int, ...] = (1, 2, 4)
"""Doses when none are given (`ablate` clips them to what every basis holds)."""


class DoseOptions(BaseModel):
    """Doses, where they are ablated, the null draws and the generation settings.

    >>> DoseOptions(ks=(4, 1, 2)).ks
    (1, 2, 4)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ks: tuple[int, ...] = Field(
        DEFAULT_KS, description="doses: numbers of leading basis directions ablated"
    )
    mode: Literal["all_layers", "band"] = Field(
        "all_layers",
        description="'all_layers' (Arditi's directional ablation) or 'band' (block outputs of "
        "`layers`)",
    )
    layers: tuple[int, ...] | None = Field(None, description="layers ablated in 'band' mode")
    n_random: int = Field(
        3, ge=MIN_NULL_DRAWS, description="random orthonormal null bases per k (at least 3)"
    )
    seed: int = Field(0, description="seed of the random nulls (draws of k use seed + k)")
    max_new_tokens: int = Field(64, ge=1, description="greedy tokens generated per prompt")
    batch_size: int = Field(16, ge=1, description="prompts per forward batch")
    fmt: Literal["chat", "raw"] = Field("chat", description="prompt format")
    flagged: Literal["exclude", "refusal", "compliance"] = Field(
        "exclude",
        description="where degenerate generations go in the reported rate (the outcome counts "
        "always report them separately)",
    )

    @field_validator("ks")
    @classmethod
    def _doses(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) < 1:
            raise ValueError(f"doses k must be positive integers, got {list(v)}")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _band_layers(self) -> DoseOptions:
        if self.mode == "band" and not self.layers:
            raise ValueError("mode 'band' needs the layers to ablate")
        if self.mode == "all_layers" and self.layers is not None:
            raise ValueError("mode 'all_layers' hooks every layer; give layers only for 'band'")
        return self


class AblateConfig(BaseModel):
    """Everything `ablate` does: which bases, which doses, where and in which form.

    >>> AblateConfig(directions=("select",), ablation="affine").selection.ablation
    'affine'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    directions: tuple[str, ...] = Field(
        ("select",),
        min_length=1,
        description="bases: select (Arditi), pca or cpca (need a base), svd, svd-did, or a "
        ".safetensors file",
    )
    ks: tuple[int, ...] | None = Field(
        None, description="doses (default 1, 2, 4 clipped to the directions every basis holds)"
    )
    mode: Literal["all_layers", "band"] = Field("all_layers", description="where to ablate")
    band: Literal["narrow", "wide"] = Field("narrow", description="layer band for mode 'band'")
    ablation: AblationForm = Field(
        "projection",
        description="projection (h - UU^T h) or affine (h - UU^T (h - mu), mu the mean harmless "
        "activation per layer, Marshall et al. 2024)",
    )
    key: str | None = Field(None, description="tensor name inside a directions file")
    layer: int | None = Field(
        None, description="row of an [L, d] file tensor, or the layer of pca/cpca/svd (peak)"
    )
    alpha: float = Field(100.0, gt=0, description="cPCA alpha")
    n_random: int = Field(3, ge=MIN_NULL_DRAWS, description="random null draws per k (>= 3)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation share for select")
    selection: SelectionOptions = Field(
        default_factory=SelectionOptions, description="Arditi's selection filters (select)"
    )
    seed: int = Field(0, description="seed of the selection split and the random nulls")
    max_new_tokens: int = Field(64, ge=1, description="greedy tokens per prompt")
    batch_size: int = Field(16, ge=1, description="prompts per batch")
    flagged: Literal["exclude", "refusal", "compliance"] = Field(
        "exclude", description="where degenerate outputs go in the reported rate"
    )
    check_weights: bool = Field(
        False, description="also run orthogonalised weights; report max |logit diff|"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        """The selection scores in the experiment's ablation form (one home for the form)."""
        if not isinstance(data, dict):
            return data
        form = data.get("ablation", "projection")
        sel = data.get("selection")
        if isinstance(sel, SelectionOptions):
            if "ablation" in sel.model_fields_set and sel.ablation != form:
                raise ValueError(f"selection.ablation {sel.ablation!r} differs from {form!r}")
            data = {**data, "selection": sel.model_copy(update={"ablation": form})}
        elif isinstance(sel, dict):
            data = {**data, "selection": {**sel, "ablation": form}}
        else:
            data = {**data, "selection": SelectionOptions(ablation=form)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> AblateConfig:
        if self.check_weights and (self.mode == "band" or self.ablation == "affine"):
            raise ValueError(
                "check_weights compares with all_layers projection ablation: use mode "
                "all_layers and ablation projection"
            )
        if self.layer is not None and set(self.directions) == {"select"}:
            raise ValueError("layer does not apply to directions 'select' (it picks its own)")
        if self.ks is not None and (not self.ks or min(self.ks) < 1):
            raise ValueError(f"doses k must be positive integers, got {list(self.ks)}")
        return self
