"""Every option of an effective-rank audit in one validated, frozen config (stored with results)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC_KS: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
"""SPEC's ablation doses; capped by the number of non-zero singular values."""


class RankAuditConfig(BaseModel):
    """Options of `rank_audit`: what to read, the energy rule, and limit (b)'s ablation."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    eps: float = Field(0.05, gt=0.0, lt=1.0)
    """Energy tolerance of rank_eps."""
    layers: tuple[int, ...] | None = None
    """Model layers to read (negatives count from the end); None reads every layer."""
    raw: bool = True
    """Also collect raw-format activations (M_naive and M_aligned need them)."""
    batch_size: int = Field(16, ge=1)
    """Prompts per forward pass."""
    ablate: bool = True
    """Run limit (b): band ablation of singular directions (generation: the slow part)."""
    ablation_matrix: Literal["template", "did"] = "template"
    """Whose left singular vectors are ablated."""
    ablation_layer: int | None = None
    """Layer of the SVD (default: the GFS peak layer)."""
    ks: tuple[int, ...] = SPEC_KS
    """Cumulative doses k (capped by the matrix's rank)."""
    n_alone: int = Field(10, ge=1)
    """Singular directions ablated one at a time (u_1 .. u_n_alone, capped by the rank)."""
    n_random: int = Field(3, ge=3)
    """Random orthonormal null bases per k."""
    n_ablation_prompts: int | None = Field(None, ge=1)
    """Harmful prompts generated from per dose (None: all)."""
    max_new_tokens: int = Field(100, ge=1)
    """Greedy generation length (SPEC: 100)."""
    seed: int = 0
    """Seed of the random nulls."""
    cache_dir: Path | None = None
    """Activation cache folder; None: $SKINDEEP_CACHE/activations."""
    refresh: bool = False
    """Recollect activations even when cached."""

    @field_validator("ks")
    @classmethod
    def _positive_doses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        """A non-empty set of positive doses, sorted."""
        if not value or min(value) < 1:
            raise ValueError(f"doses k must be positive integers, got {list(value)}")
        return tuple(sorted(set(value)))

    def json_dict(self) -> dict:
        """The config as JSON-ready data."""
        return self.model_dump(mode="json")
