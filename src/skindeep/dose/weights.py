"""Weight check: hook ablation against an in-memory copy with orthogonalised weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skindeep.evaluation.logits import last_token_logits
from skindeep.interventions import ablate, orthogonalize_weights
from skindeep.models.adapter import ModelAdapter
from skindeep.models.chat import PromptFormat, format_prompts


def weight_check(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    basis: np.ndarray,
    prompts: Sequence[str],
    fmt: PromptFormat = "chat",
    batch_size: int = 16,
) -> float:
    """Max |logit difference| at the last token between hook ablation (all layers) and an
    in-memory copy with orthogonalised weights; the copy is dropped before returning."""
    texts = format_prompts(tokenizer, prompts, fmt)
    with ablate(model, adapter, basis):
        hooked = last_token_logits(model, tokenizer, texts, batch_size)
    edited = orthogonalize_weights(model, adapter, basis)
    try:
        weighted = last_token_logits(edited, tokenizer, texts, batch_size)
    finally:
        del edited
    return float((hooked - weighted).abs().max())


# ---- figure ----------------------------------------------------------------------------------
