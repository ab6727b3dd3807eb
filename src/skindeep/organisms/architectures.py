"""Real Hugging Face architectures at organism sizes, built from config with random weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from skindeep.errors import ConfigError

#: Families the zoo can build; any `transformers` model_type with the standard config names works.
FAMILIES: tuple[str, ...] = ("llama", "qwen2", "gemma2", "mistral", "phi3", "gpt2")


@dataclass(frozen=True)
class Size:
    """Width and depth of an organism."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int


SIZES: dict[str, Size] = {
    "xs": Size(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=192),
    "s": Size(hidden_size=96, num_layers=4, num_heads=4, intermediate_size=288),
    "m": Size(hidden_size=128, num_layers=6, num_heads=4, intermediate_size=384),
    "l": Size(hidden_size=192, num_layers=8, num_heads=6, intermediate_size=576),
}


def build_config(family: str, size: str, tokenizer: PreTrainedTokenizerBase, max_len: int = 96):
    """A config of `family` at `size`, using the generic attribute names every config maps."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown architecture family {family!r}; choose one of {FAMILIES}")
    if size not in SIZES:
        raise ConfigError(f"unknown organism size {size!r}; choose one of {tuple(SIZES)}")
    s = SIZES[size]
    config = AutoConfig.for_model(
        family,
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_heads,
        head_dim=s.hidden_size // s.num_heads,
        intermediate_size=s.intermediate_size,
        max_position_embeddings=max_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    for attr in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(config, attr):
            setattr(config, attr, 0.0)
    if family == "gpt2":
        config.n_inner = s.intermediate_size
    if family == "gemma2":
        config.sliding_window = max_len
    if family == "phi3":
        config.pad_token_id = tokenizer.pad_token_id
    return config


def build_model(
    family: str, size: str, tokenizer: PreTrainedTokenizerBase, seed: int
) -> PreTrainedModel:
    """A randomly initialised causal LM of `family` at `size`, seeded for reproducibility."""
    config = build_config(family, size, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model
