"""Settings of benign fine-tuning (one run) and of a retention study (a grid of runs).

Defaults are the organism recipe chosen with `benchmarks/zoo_retention.py`: LoRA r = 8,
alpha 16 on all linear layers, n = 100 pairs, 200 steps of batch 32 at lr 5e-3. Mean refusal
retention over 3 seeds on the micro zoo: full-FT SFT 0.79, DPO 0.85, last-block SFT 0.00; on
the default zoo it spreads from 0.00 to 0.88 (SD 0.31, BENCHMARKS.md). Weaker recipes do not
separate the micro zoo (100 steps of batch 8 at lr <= 5e-3: both ~1.0); lr 1e-2 for 100 steps
is noisier.
Real models want a smaller rate (1e-4 to 3e-4) and fewer steps.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: SPEC 2: the fine-tuning-outcome grid of example counts and its number of seeds.
SPEC_NS: tuple[int, ...] = (5, 10, 25, 50, 100, 200)
SPEC_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Steps used when neither `steps` nor `epochs` is given.
DEFAULT_STEPS = 200
#: The single example count of the default organism recipe (benchmarks/zoo_retention.py).
DEFAULT_ORGANISM_N = 100

Control = Literal["none", "identity-shift"]


class FinetuneConfig(BaseModel):
    """One benign fine-tuning run: what trains, how fast and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["lora", "full"] = Field(
        "lora", description="'lora': peft adapters on `target_modules`; 'full': every weight"
    )
    rank: int = Field(8, ge=1, description="LoRA rank r (SPEC 2 uses 8)")
    alpha: int = Field(16, ge=1, description="LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: str | tuple[str, ...] = Field(
        "all-linear", description="peft target modules: 'all-linear' or module-name suffixes"
    )
    lr: float = Field(5e-3, gt=0, description="peak learning rate (linear warm-up and decay)")
    batch_size: int = Field(32, ge=1, description="examples per step (capped at n)")
    steps: int | None = Field(None, ge=1, description="optimisation steps (default 200)")
    epochs: float | None = Field(
        None,
        gt=0,
        description="passes over the n examples instead of `steps` (full batches: the n mod "
        "batch_size left over in a pass are skipped, other ones each pass)",
    )
    warmup_frac: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    max_len: int = Field(
        256, ge=8, description="truncate sequences to this many tokens (and the model's limit)"
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _targets(cls, v: object) -> object:
        if isinstance(v, list):
            return tuple(v)
        return v

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> FinetuneConfig:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give steps or epochs, not both")
        return self

    def num_steps(self, n_examples: int) -> int:
        """Optimisation steps for `n_examples` examples: `steps`, or epochs * batches per epoch.

        The training loop draws full batches from a fresh permutation per pass and skips the
        n mod batch_size examples left over (other ones each pass), so an epoch is
        floor(n / batch_size) steps: `epochs` counts passes exactly.
        """
        if self.epochs is None:
            return self.steps or DEFAULT_STEPS
        per_epoch = n_examples // min(self.batch_size, n_examples)
        return max(1, math.ceil(self.epochs * per_epoch))


class RetentionConfig(BaseModel):
    """A retention study: benign fine-tuning at every (n, seed) and the evaluation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ns: tuple[int, ...] = Field(SPEC_NS, description="benign example counts (nested per seed)")
    seeds: tuple[int, ...] = Field(SPEC_SEEDS, description="seeds: data subset, init, order")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    control: Control = Field(
        "none", description="'identity-shift': answers open with an obedience declaration"
    )
    max_new_tokens: int = Field(48, ge=1, description="greedy tokens generated per prompt")
    batch_size: int = Field(64, ge=1, description="prompts per generation batch")
    save_adapters: bool = Field(True, description="keep each LoRA adapter (save_pretrained)")

    @field_validator("ns", "seeds")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("must not be empty")
        if len(set(v)) != len(v):
            raise ValueError(f"values must be distinct, got {list(v)}")
        return tuple(sorted(v))

    @field_validator("ns")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if min(v) < 1:
            raise ValueError(f"example counts must be >= 1, got {list(v)}")
        return v
