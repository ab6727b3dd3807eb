"""Every option of a pair audit in one validated, frozen config (stored beside its results)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skindeep.geometry import CPCA_ALPHAS


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
    """Residual after each block (hidden_states[l+1], raw at the last layer) or before it."""
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
