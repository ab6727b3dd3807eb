"""Collect activations of any causal LM on a prompt list into one or more sinks.

Prompts are encoded once, run in length-sorted, left-padded batches (so every prompt's last
real token is at -1 and read positions are negative offsets), and each forward pass stops at
the last requested block: later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from skindeep.activations.hooks import (
    SITES,
    LastLayer,
    Site,
    normalize_layers,
    record_activations,
    run_forward,
)
from skindeep.activations.spec import (
    ActivationSink,
    CollectionSpec,
    Label,
    Positions,
    check_labels,
)
from skindeep.cache import content_hash
from skindeep.models.adapter import ModelAdapter
from skindeep.models.chat import PromptFormat, format_prompts, post_instruction_tokens
from skindeep.runtime import ProgressLike, batches, encode, pad_token_id, supported_kwargs


def template_tokenizer_of(tokenizer: Any, template_tokenizer: Any | None) -> Any:
    """The tokenizer that formats and encodes chat prompts: `template_tokenizer`, else ours.

    A base model in chat format is fed the aligned tokenizer's template (SPEC 1); pass that
    tokenizer, or the aligned model's adapter, as `template_tokenizer`.
    """
    if isinstance(template_tokenizer, ModelAdapter):
        return template_tokenizer.tokenizer
    return template_tokenizer if template_tokenizer is not None else tokenizer


def resolve_offsets(
    positions: Positions, fmt: PromptFormat, fmt_tokenizer: Any, encoded: list[list[int]]
) -> tuple[int, ...]:
    """The negative token offsets to read, checked against every encoded prompt."""
    if positions == "last":
        offsets: tuple[int, ...] = (-1,)
    elif positions == "post_instruction":
        if fmt != "chat":
            raise ValueError("positions='post_instruction' needs fmt='chat'")
        tail = post_instruction_tokens(fmt_tokenizer)
        if not tail:
            raise ValueError("the chat template puts no tokens after the user message")
        bad = [i for i, ids in enumerate(encoded) if ids[-len(tail) :] != tail]
        if bad:
            raise ValueError(
                f"{len(bad)} prompt(s) (first: {bad[0]}) do not end with the template's "
                f"post-instruction tokens {tail}; pass explicit negative positions instead"
            )
        offsets = tuple(range(-len(tail), 0))
    elif isinstance(positions, str):
        raise ValueError(
            f"positions must be 'last', 'post_instruction' or negative ints, got {positions!r}"
        )
    else:
        offsets = tuple(int(p) for p in positions)
        if not offsets or any(p >= 0 for p in offsets) or len(set(offsets)) != len(offsets):
            raise ValueError(
                f"explicit positions must be distinct negative offsets (-1 = last token), "
                f"got {list(positions)}"
            )
    shortest = min(len(ids) for ids in encoded)
    if -min(offsets) > shortest:
        raise ValueError(
            f"position {min(offsets)} reaches before the start of the shortest prompt "
            f"({shortest} tokens)"
        )
    return offsets


def _model_dtype(model: Any) -> str:
    """The dtype of the model's first parameter, as a short string."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _template_id(tokenizer: Any) -> str:
    """Which chat template formatted the prompts: tokenizer name and a hash of the template."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    template = getattr(tokenizer, "chat_template", None)
    return f"{name}#{content_hash(template, 12) if template else 'fallback'}"


def _select(offsets: tuple[int, ...]) -> Any:
    """A hook reducer: the rows at `offsets` of a left-padded [b, T, d] batch, float32 on CPU."""

    def select(hidden: torch.Tensor) -> torch.Tensor:
        index = torch.tensor([hidden.shape[1] + o for o in offsets], device=hidden.device)
        return hidden.index_select(1, index).to("cpu", torch.float32)

    return select


def collect(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    prompts: Sequence[str],
    *,
    labels: Sequence[Label] | None = None,
    layers: Sequence[int] | None = None,
    site: Site = "block_out",
    positions: Positions = "last",
    fmt: PromptFormat = "raw",
    template_tokenizer: Any | None = None,
    batch_size: int = 16,
    sink: ActivationSink | Sequence[ActivationSink] = (),
    progress: ProgressLike = None,
    last_layer: LastLayer = "raw",
) -> CollectionSpec:
    """Run every prompt through the model and feed float32 activations to the sinks.

    Per prompt the sinks get [L, d] (positions='last') or [P, L, d], L = len(layers) in
    ascending order. In chat format the prompts are formatted and tokenized by
    `template_tokenizer` when given (a tokenizer or an adapter), else by `tokenizer`.
    `last_layer="normed"` reads the model's last layer after its final norm
    (`output_hidden_states[-1]`, the Skin-Deep code's convention) instead of the raw residual.
    """
    sinks = list(sink) if isinstance(sink, Sequence) else [sink]
    if not prompts:
        raise ValueError("no prompts to collect activations for")
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    label_list = check_labels(labels, len(prompts))
    wanted = normalize_layers(layers, adapter.num_layers)
    fmt_tokenizer = template_tokenizer_of(tokenizer, template_tokenizer)
    enc_tokenizer = fmt_tokenizer if fmt == "chat" else tokenizer
    encoded = encode(enc_tokenizer, format_prompts(fmt_tokenizer, prompts, fmt))
    if any(not ids for ids in encoded):
        raise ValueError("every prompt must tokenize to at least one token")
    vocab = int(adapter.embedding.weight.shape[0])
    if max(max(ids) for ids in encoded) >= vocab:
        raise ValueError(
            f"the prompts encode to token ids beyond the model's {vocab} embeddings: the "
            "(template) tokenizer does not match this model"
        )
    offsets = resolve_offsets(positions, fmt, fmt_tokenizer, encoded)
    spec = CollectionSpec(
        layers=tuple(wanted),
        site=site,
        positions=positions if isinstance(positions, str) else offsets,
        offsets=offsets,
        fmt=fmt,
        hidden_size=adapter.hidden_size,
        num_layers=adapter.num_layers,
        n_prompts=len(prompts),
        n_tokens=sum(len(ids) for ids in encoded),
        model=type(model).__name__,
        dtype=_model_dtype(model),
        template=_template_id(enc_tokenizer) if fmt == "chat" else None,
        last_layer=last_layer,
    )
    extra = supported_kwargs(model, use_cache=False)
    pad_id = pad_token_id(enc_tokenizer)
    recording = record_activations(
        model,
        adapter,
        wanted,
        site,
        select=_select(offsets),
        stop_early=True,
        last_layer=last_layer,
    )
    runs = batches(
        model,
        encoded,
        pad_id=pad_id,
        batch_size=batch_size,
        progress=progress,
        description="activations",
    )
    with recording as records, runs:  # checks the site and last layer before any sink starts
        for s in sinks:
            s.begin(spec, list(prompts), label_list)
        for batch in runs:
            run_forward(model, **batch.inputs, **extra)
            acts = _gather(records, wanted, spec.squeeze_positions)
            batch_labels = [label_list[i] for i in batch.indices]
            for s in sinks:
                s.add(batch.indices, batch_labels, acts)
    for s in sinks:
        s.end()
    return spec


def final_normed(adapter: ModelAdapter, acts: np.ndarray) -> np.ndarray:
    """Raw last-layer activations [..., d] passed through the model's final norm, as float32.

    The final norm acts on each token alone, so this turns a stored `raw` collection's last
    layer into the `normed` convention (transformers' `hidden_states[-1]`) without rerunning
    the model: a sweep over the last-layer convention can read one cached collection.
    """
    if adapter.final_norm is None:
        raise ValueError("no final norm was found in this model; its last layer has no normed form")
    weight = next(adapter.final_norm.parameters(), None)
    x = torch.from_numpy(np.ascontiguousarray(acts))
    if weight is not None:
        x = x.to(weight.device, weight.dtype)
    with torch.inference_mode():
        return adapter.final_norm(x).to("cpu", torch.float32).numpy()


def _gather(records: dict[int, list[torch.Tensor]], layers: list[int], squeeze: bool) -> np.ndarray:
    """Stack one forward pass's captures to [b, P, L, d] (or [b, L, d]) and clear the records."""
    counts = {layer: len(records[layer]) for layer in layers}
    if any(c != 1 for c in counts.values()):
        raise RuntimeError(f"expected one capture per layer per batch, got {counts}")
    acts = torch.stack([records[layer].pop() for layer in layers], dim=2)
    return (acts[:, 0] if squeeze else acts).numpy()
