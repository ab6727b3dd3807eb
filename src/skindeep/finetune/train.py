"""Benign fine-tuning: LoRA adapters (peft) or all weights, trained by the organisms' loop.

Loss is on the response tokens only, through the model's chat template (`tokenize_chat`), and
`optimise` gives seeded batches, so the same seed and data give identical adapter weights.
Adapters are saved with peft's `save_pretrained` and can be merged into a fresh base model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from jinja2.exceptions import TemplateError
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.cache import atomic_directory
from skindeep.evaluation.generation import model_device, pad_token_id
from skindeep.finetune.config import FinetuneConfig
from skindeep.finetune.data import Pair
from skindeep.models.adapter import FALLBACK_SYSTEM, FALLBACK_TEMPLATE
from skindeep.organisms.training import (
    IGNORE,
    Tokenized,
    TrainConfig,
    TrainStats,
    collate,
    optimise,
    tokenize_chat,
)


def position_limit(model: Any) -> int | None:
    """The longest sequence the model's position embeddings allow, if the config says."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def chat_prompt(tokenizer: PreTrainedTokenizerBase, user: str, system: str | None = None) -> str:
    """A user turn (after an optional system turn) with the generation prompt.

    As `ModelAdapter.format_chat`: a template without a system role gets the system text
    prepended to the user turn; a tokenizer without a template gets skindeep's fallback format.
    """
    if not getattr(tokenizer, "chat_template", None):
        head = FALLBACK_SYSTEM.format(system=system) if system else ""
        return head + FALLBACK_TEMPLATE.format(user=user)
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return str(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    except TemplateError:
        if not system:
            raise
        return chat_prompt(tokenizer, f"{system}\n\n{user}")


def _conversation(
    tokenizer: PreTrainedTokenizerBase, user: str, assistant: str, system: str | None
) -> str | None:
    """The whole exchange through the chat template (None without a template)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    except TemplateError:
        if not system:
            raise
        return _conversation(tokenizer, f"{system}\n\n{user}", assistant, None)


def tokenize_pair(
    tokenizer: PreTrainedTokenizerBase, pair: Pair, max_len: int, system: str | None = None
) -> Tokenized:
    """A pair as one training sequence with loss on the response tokens only."""
    if system is None and getattr(tokenizer, "chat_template", None):
        return tokenize_chat(tokenizer, pair.instruction, pair.response, max_len)
    prompt = chat_prompt(tokenizer, pair.instruction, system)
    full = _conversation(tokenizer, pair.instruction, pair.response, system)
    if not full or not full.startswith(prompt):
        full = prompt + pair.response + (tokenizer.eos_token or "")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[:max_len]
    labels = ([IGNORE] * len(p_ids) + c_ids)[:max_len]
    return Tokenized(tuple(ids), tuple(labels))


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Hide peft's notices that need no action: a deprecated transformers property it reads,
    and GPT-2's Conv1D layers, for which it sets fan_in_fan_out itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out")
        yield


def lora_config(config: FinetuneConfig) -> LoraConfig:
    """The peft LoRA config of a fine-tuning config."""
    targets = config.target_modules
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )


def prepare(model: PreTrainedModel, config: FinetuneConfig, seed: int) -> PreTrainedModel:
    """Wrap `model` in seeded LoRA adapters (in place), or mark every weight trainable."""
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    torch.manual_seed(seed)  # LoRA A matrices are drawn from the global generator
    with _quiet_peft():
        return get_peft_model(model, lora_config(config))


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    config: FinetuneConfig,
    seed: int,
    system: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[PreTrainedModel, TrainStats]:
    """Fine-tune on `pairs`; returns the trained model (a PeftModel for LoRA) and its stats.

    LoRA wraps `model` in place (`unload` gives the untouched base back); `full` changes
    `model`'s own weights, so pass a copy to keep the original.
    """
    if not pairs:
        raise ValueError("no fine-tuning pairs")
    limit = position_limit(model)
    max_len = min(config.max_len, limit) if limit else config.max_len
    data = [tokenize_pair(tokenizer, p, max_len, system) for p in pairs]
    tuned = prepare(model, config, seed)
    pad, device = pad_token_id(tokenizer), model_device(tuned)

    def step_loss(idx: list[int]) -> torch.Tensor:
        batch = collate([data[i] for i in idx], pad)
        return tuned(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).loss

    train = TrainConfig(
        steps=config.num_steps(len(data)),
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        warmup_frac=config.warmup_frac,
        max_grad_norm=config.max_grad_norm,
        seed=seed,
    )
    stats = optimise(tuned, len(data), step_loss, train, on_step)
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned.eval(), stats


def save_adapter(model: PeftModel, path: Path) -> Path:
    """Save a LoRA model's adapter (peft `save_pretrained`) atomically into `path`."""
    if not isinstance(model, PeftModel):
        raise TypeError("only LoRA (peft) models have an adapter to save")
    with atomic_directory(Path(path)) as tmp:
        model.save_pretrained(tmp)
    return Path(path)


def merge_adapter(base: PreTrainedModel, path: Path) -> PreTrainedModel:
    """Load a saved adapter onto `base` and merge it into plain weights."""
    with _quiet_peft():
        merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return merged.eval()


def unload(model: PreTrainedModel) -> PreTrainedModel:
    """The base model without its LoRA layers (weights untouched); other models as they are."""
    if isinstance(model, PeftModel):
        return model.unload()
    return model
