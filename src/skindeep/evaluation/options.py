"""Options of a refusal-evaluation generation run, validated on construction (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerationOptions(BaseModel):
    """Options of a refusal-evaluation generation run (greedy decoding is fixed, not an option).

    >>> GenerationOptions(max_new_tokens=100).batch_size
    16
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(
        64, ge=1, description="generated tokens per prompt at most; SPEC's ablation uses 100"
    )
    batch_size: int = Field(
        16, ge=1, description="prompts per forward batch (length-sorted, so padding stays small)"
    )
    fmt: Literal["chat", "raw"] = Field(
        "chat", description="'chat' wraps each prompt in the chat template; 'raw' feeds it as is"
    )
