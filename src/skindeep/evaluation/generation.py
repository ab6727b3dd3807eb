"""Batched greedy generation through the runtime's batches, original order restored."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from skindeep.evaluation.options import GenerationOptions
from skindeep.models.chat import format_prompts
from skindeep.runtime import ProgressLike, batches, encode, pad_token_id


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
    runs = batches(
        model,
        encoded,
        pad_id=pad_id,
        batch_size=batch_size,
        progress=progress,
        description="generating",
        position_ids=False,  # generate derives them from the attention mask
    )
    with plain_generation_config(model), runs:
        for batch in runs:
            out = model.generate(**batch.inputs, generation_config=config)
            new = out[:, batch.width :].tolist()
            for i, row in zip(batch.indices, new, strict=True):
                cut = next((j for j, t in enumerate(row) if t in stop), len(row))
                results[i] = row[:cut]
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
