"""Batched greedy generation: left-padded, length-sorted batches, original order restored.

Also holds the batching helpers the refusal score and KL reuse (`encode`, `left_pad`,
`length_sorted_batches`), so every forward pass in evaluation pads the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from rich.progress import Progress

from skindeep.evaluation.options import GenerationOptions

PromptFormat = Literal["chat", "raw"]
#: A progress sink: a callable given the number of prompts done so far, or a rich Progress.
ProgressLike = Callable[[int], None] | Progress | None


def format_prompts(tokenizer: Any, prompts: Sequence[str], fmt: PromptFormat = "chat") -> list[str]:
    """Turn prompt texts into model inputs: the chat template with generation prompt, or raw."""
    if fmt == "raw":
        return list(prompts)
    if fmt != "chat":
        raise ValueError(f"fmt must be 'chat' or 'raw', got {fmt!r}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("fmt='chat' needs a tokenizer with a chat_template; use fmt='raw'")
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, with special tokens as the model expects them at a prompt's start.

    Special tokens are added only where the text lacks a leading BOS: chat templates usually
    write it into the text, and adding it again feeds a doubled BOS the model never saw. Any
    suffix the tokenizer appends (an EOS) is dropped, so the last token is the prompt's own.
    """
    bos = getattr(tokenizer, "bos_token", None)
    out: list[list[int]] = []
    for text in texts:
        plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if bos and text.startswith(bos):
            out.append(plain)
            continue
        full = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        starts = [i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain]
        out.append(full[: starts[0] + len(plain)] if plain and starts else full)
    return out


def pad_token_id(tokenizer: Any) -> int:
    """The id used for padding: the pad token, else the first EOS id (padding is masked anyway)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("tokenizer has neither a pad token nor an EOS token to pad with")


def left_pad(
    ids: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Left-pad token lists into `input_ids`, `attention_mask` and matching `position_ids`.

    Left padding puts every prompt's last real token at position -1. Position ids count real
    tokens only, as `generate` does, so a padded row sees the same positions as unpadded.
    """
    if not ids or any(len(row) == 0 for row in ids):
        raise ValueError("every prompt must tokenize to at least one token")
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
    }


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches sorted by length, longest first, so memory peaks (and fails) early."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def model_device(model: Any) -> torch.device:
    """The device inputs go to: the model's own `device`, else that of its first parameter."""
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put the model in eval mode (no dropout) for the block, then restore its previous mode."""
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def progress_callback(
    progress: ProgressLike, total: int, description: str
) -> Callable[[int], None]:
    """Adapt a progress sink to a `callback(n_done)`; a rich Progress gets a new task."""
    if progress is None:
        return lambda n_done: None
    if isinstance(progress, Progress):
        task = progress.add_task(description, total=total)
        return lambda n_done: progress.update(task, completed=n_done)
    return progress


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a response: the model's generation-config EOS ids and the tokenizer's."""
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return sorted(ids)


@contextmanager
def plain_generation_config(model: Any) -> Iterator[None]:
    """Blank the model's own generation config for the block, then restore it.

    transformers fills every option left unset in the config passed to `generate` from
    `model.generation_config`, so a checkpoint's repetition_penalty, min_new_tokens or
    sampling settings would leak into "greedy" decoding. The wrapped base model (PEFT) is
    blanked too.
    """
    from transformers import GenerationConfig

    owners = [model]
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and get_base() is not model:
        owners.append(get_base())
    saved = [(m, m.generation_config) for m in owners if hasattr(m, "generation_config")]
    try:
        for owner, _ in saved:
            owner.generation_config = GenerationConfig()
        yield
    finally:
        for owner, config in saved:
            owner.generation_config = config


def generate_token_ids(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: ProgressLike = None,
) -> list[list[int]]:
    """Greedy new-token ids per formatted prompt, cut before the first EOS, in input order."""
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    encoded = encode(tokenizer, prompts)
    pad_id = pad_token_id(tokenizer)
    stop = eos_token_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=stop or None,
    )
    results: list[list[int]] = [[] for _ in prompts]
    report = progress_callback(progress, len(prompts), "generating")
    done = 0
    device = model_device(model)
    with eval_mode(model), plain_generation_config(model), torch.inference_mode():
        for batch in length_sorted_batches([len(e) for e in encoded], batch_size):
            inputs = left_pad([encoded[i] for i in batch], pad_id, device)
            inputs.pop("position_ids")  # generate derives them from the attention mask
            out = model.generate(**inputs, generation_config=config)
            new = out[:, inputs["input_ids"].shape[1] :].tolist()
            for i, row in zip(batch, new, strict=True):
                cut = next((j for j, t in enumerate(row) if t in stop), len(row))
                results[i] = row[:cut]
            done += len(batch)
            report(done)
    return results


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: ProgressLike = None,
) -> list[str]:
    """Greedy responses to already-formatted prompts, decoded without special tokens."""
    ids = generate_token_ids(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    options: GenerationOptions | None = None,
    progress: ProgressLike = None,
) -> list[str]:
    """Format plain prompts per `options.fmt`, then generate greedily: the one-call path."""
    opts = options or GenerationOptions()
    return generate(
        model,
        tokenizer,
        format_prompts(tokenizer, prompts, opts.fmt),
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
        progress=progress,
    )
