"""Base organisms: a random-weight architecture trained on the language to answer every request."""

from __future__ import annotations

import random

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.organisms.architectures import build_model
from skindeep.organisms.language import ChatLanguage
from skindeep.organisms.training import (
    Tokenized,
    TrainConfig,
    TrainStats,
    tokenize_chat,
    tokenize_raw,
    train_causal_lm,
)


def base_corpus(
    language: ChatLanguage, tokenizer: PreTrainedTokenizerBase, seed: int, max_len: int = 96
) -> list[Tokenized]:
    """Every request of every topic with a compliant answer, plus the raw harm/safety facts.

    Held-out topics are included: a base model has seen all topics in pretraining; only the
    alignment recipes never see them.
    """
    rng = random.Random(seed)
    data = [
        tokenize_chat(tokenizer, r.text, language.answer(r, rng), max_len)
        for r in language.all_requests("all")
    ]
    data += [tokenize_raw(tokenizer, fact, max_len) for fact in language.facts()]
    return data


def train_base(
    family: str,
    size: str,
    language: ChatLanguage,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
) -> tuple[PreTrainedModel, TrainStats]:
    """Build `family` at `size` from scratch and train it on the base corpus."""
    model = build_model(family, size, tokenizer, config.seed)
    stats = train_causal_lm(
        model, base_corpus(language, tokenizer, config.seed), config, tokenizer.pad_token_id
    )
    for p in model.parameters():
        p.requires_grad_(False)
    return model, stats
