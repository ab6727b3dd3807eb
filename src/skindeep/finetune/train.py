"""Benign fine-tuning: LoRA adapters (peft) or all weights, trained by the organisms' loop.

Loss is on the response tokens only, through the model's chat template (`tokenize_chat`), and
`optimise` gives seeded batches, so the same seed and data give identical adapter weights.
Adapters are saved with peft's `save_pretrained` and can be merged into a fresh base model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.artifacts import atomic_directory
from skindeep.errors import ConfigError, PromptError
from skindeep.finetune.config import FinetuneConfig
from skindeep.finetune.data import Pair
from skindeep.organisms.training import (
    IGNORE,
    Tokenized,
    TrainConfig,
    TrainStats,
    collate,
    optimise,
    tokenize_chat,
)
from skindeep.prompts import excerpt
from skindeep.runtime import model_device, pad_token_id


def position_limit(model: Any) -> int | None:
    """The longest sequence the model's position embeddings allow, if the config says."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def has_response(t: Tokenized) -> bool:
    """Whether a sequence keeps a response token the loss can use (labels are shifted by one)."""
    return any(label != IGNORE for label in t.labels[1:])


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    max_len: int,
    system: str | None = None,
    limit: int | None = None,
) -> list[Tokenized]:
    """Every pair tokenized; a pair whose prompt fills `max_len` (no response left) is an error.

    Such a pair has every label ignored, so a batch of them has a NaN loss; `limit` is the
    model's position limit, named in the message when it is what capped `max_len`.
    """
    data = [tokenize_chat(tokenizer, p.instruction, p.response, max_len, system) for p in pairs]
    empty = [p for p, t in zip(pairs, data, strict=True) if not has_response(t)]
    if empty:
        if limit == max_len:
            where, fix = f" (the model's position limit {limit})", ""
        else:
            where, fix = "", ", or raise max_len"
        raise PromptError(
            f"{len(empty)} of {len(pairs)} benign example(s) keep no response token after "
            f"truncation to max_len={max_len} tokens{where}, e.g. the instruction "
            f"{excerpt(empty[0].instruction)}; shorten or remove those pairs{fix}"
        )
    return data


def _effective_max_len(model: Any, config: FinetuneConfig) -> tuple[int, int | None]:
    """The sequence length used for training (config capped by the model) and the model cap."""
    limit = position_limit(model)
    return (min(config.max_len, limit) if limit else config.max_len), limit


def check_data(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    config: FinetuneConfig,
    system: str | None = None,
) -> None:
    """Fail early when some pair would leave no response token for the loss (see finetune)."""
    max_len, limit = _effective_max_len(model, config)
    tokenize_pairs(tokenizer, pairs, max_len, system, limit)


def linear_module_names(model: Any) -> list[str]:
    """Distinct last name components of the model's linear (and GPT-2 Conv1D) modules, in order."""
    names: dict[str, None] = {}
    for name, module in model.named_modules():
        if name and (isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"):
            names.setdefault(name.rsplit(".", 1)[-1], None)
    return list(names)


def check_targets(model: Any, config: FinetuneConfig) -> None:
    """Fail (ConfigError) when a LoRA target module name matches no module of `model`.

    Names match as peft matches them: the whole module path or its last components; a string
    other than 'all-linear' is a regular expression over whole paths.
    """
    targets = config.target_modules
    if config.method != "lora" or targets == "all-linear":
        return
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(targets, str):
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        raise _target_error(model, missing)


def _target_error(model: Any, missing: Sequence[str], detail: str = "") -> ConfigError:
    """The error for LoRA targets that match nothing (or that peft refused, with `detail`)."""
    linear = linear_module_names(model)
    shown = ", ".join(linear[:10]) + (", ..." if len(linear) > 10 else "")
    named = f"LoRA target module(s) {', '.join(map(repr, missing))}"
    kind = type(model).__name__
    what = f"cannot be adapted in {kind} ({detail})" if detail else f"match no module of {kind}"
    return ConfigError(
        f"{named} {what}; its linear modules are: {shown or 'none'}; pass some of these "
        "(comma-separated) or 'all-linear'"
    )


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
    check_targets(model, config)
    torch.manual_seed(seed)  # LoRA A matrices are drawn from the global generator
    try:
        with _quiet_peft():
            return get_peft_model(model, lora_config(config))
    except ValueError as exc:  # e.g. a target that names an unsupported module type
        targets = config.target_modules
        missing = [targets] if isinstance(targets, str) else list(targets)
        raise _target_error(model, missing, " ".join(str(exc).split()) or "peft") from exc


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
    max_len, limit = _effective_max_len(model, config)
    data = tokenize_pairs(tokenizer, pairs, max_len, system, limit)
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
    try:
        stats = optimise(tuned, len(data), step_loss, train, on_step)
    except BaseException:
        if isinstance(tuned, PeftModel):  # leave the base model as it was given
            tuned.unload()
        raise
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
