"""Every option of a pair audit in one validated, frozen config (stored beside its results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skindeep.geometry import CPCA_ALPHAS

PRESETS: dict[str, dict[str, Any]] = {
    "skin-deep-code": {
        "variant": "code",
        "fmt": "raw",
        "layers": None,
        "site": "block_out",
        "last_layer": "normed",
    },
}
"""Named conventions: the settings each preset fixes (positions are always the last token)."""


class AuditConfig(BaseModel):
    """Options of `audit_pair`: what to read from the models and how to score it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    variant: Literal["code", "paper"] = "code"
    """Headline GFS variant (peak layer, summary); both variants are always computed."""
    fmt: Literal["raw", "chat"] = "chat"
    """Prompt format; in `chat` the base model gets the aligned tokenizer's template too."""
    layers: tuple[int, ...] | None = None
    """Model layers to read (negatives count from the end); None reads every layer."""
    site: Literal["block_out", "block_in"] = "block_out"
    """Residual after each block (hidden_states[l+1]) or before it."""
    last_layer: Literal["raw", "normed"] = "raw"
    """The model's last layer read as the raw block output, or after the final norm
    (`normed`: transformers' hidden_states[-1], the Skin-Deep code's convention); block_out
    only."""
    preset: Literal["skin-deep-code"] | None = None
    """The named convention these settings reproduce (`AuditConfig.preset_config`), recorded
    in audit.json; None when the settings were chosen one by one."""
    batch_size: int = Field(16, ge=1)
    """Prompts per forward pass."""
    n_perm: int = Field(1000, ge=1)
    """Permutations for the PERMANOVA and MMD tests."""
    q: float = Field(0.05, gt=0.0, lt=1.0)
    """Benjamini-Hochberg FDR level across layers."""
    alpha: float = Field(100.0, ge=0.0)
    """cPCA contrast weight of the paper variant (ignored when `select_alpha`)."""
    select_alpha: bool = False
    """Choose alpha from `alphas` by held-out probe accuracy (mean over layers); ties keep
    `alpha`."""
    alphas: tuple[float, ...] = CPCA_ALPHAS
    """Grid for `select_alpha`."""
    k: int | None = Field(None, ge=1)
    """Fixed safety-subspace dimension per layer; None: the eps-energy rule."""
    eps: float = Field(0.05, ge=0.0, lt=1.0)
    """Energy tolerance of the rank rule (k = smallest rank holding 1 - eps of the energy)."""
    stats_on: Literal["aligned", "difference"] = "aligned"
    """Layer statistics on the aligned model's activations or on D = aligned - base."""
    permanova_distance: Literal["euclidean", "sqeuclidean"] = "euclidean"
    """PERMANOVA dissimilarity. 'euclidean': the pseudo-F sums run over squared Euclidean
    distances (SPEC; equals the classical trace F). 'sqeuclidean': the squared distance is the
    dissimilarity, so its square (||x - y||^4) enters the sums."""
    test_size: float = Field(0.3, gt=0.0, lt=1.0)
    """Held-out share for the probe, alpha selection and the held-out Arditi effect size."""
    seed: int = 0
    """Seed of the held-out split and the permutations."""
    cache_dir: Path | None = None
    """Activation cache folder; None: $SKINDEEP_CACHE/activations."""
    refresh: bool = False
    """Recollect activations even when cached."""

    @model_validator(mode="after")
    def _check_conventions(self) -> AuditConfig:
        """`normed` needs block outputs; a preset's settings must be the preset's."""
        if self.last_layer == "normed" and self.site != "block_out":
            raise ValueError("last_layer='normed' reads block outputs: it needs site='block_out'")
        if self.preset is not None:
            fixed = PRESETS[self.preset]
            wrong = {k: getattr(self, k) for k, v in fixed.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(
                    f"preset {self.preset!r} sets {PRESETS[self.preset]}, but got {wrong}"
                )
        return self

    @classmethod
    def preset_config(cls, name: str, **options: Any) -> AuditConfig:
        """The config of a named preset, with any other options (n_perm, seed, ...) given.

        `skin-deep-code`: every choice as js-lee-AI/skin-deep's `compute_gfs.py` makes it:
        activations from `output_hidden_states[1:]` (block outputs of every layer, the last
        after the final norm), raw prompts, the last token, the difference direction as PC1 of
        D_l over all prompts, and the released-code GFS variant (linspace weights).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
        clash = sorted(set(options) & set(PRESETS[name]))
        if clash:
            raise ValueError(f"preset {name!r} sets {clash} itself; do not pass them")
        return cls(preset=name, **PRESETS[name], **options)

    @field_validator("alphas")
    @classmethod
    def _check_alphas(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        """A non-empty grid of non-negative alphas."""
        if not value or any(a < 0 for a in value):
            raise ValueError("alphas must be a non-empty list of numbers >= 0")
        return value

    def json_dict(self) -> dict:
        """The config as JSON-ready data."""
        return self.model_dump(mode="json")
