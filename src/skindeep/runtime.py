"""The one forward-pass runtime: tokenisation, padding, length-sorted batching, eval mode,
autograd off and progress, for every batched model call in skindeep.

Activations, logits, refusal scores, KL, selection and generation all run their batches
through `batches`, so every forward pass pads, orders and reports the same way:

    texts = format_prompts(tokenizer, prompts, "chat")      # skindeep.models.chat
    encoded = encode(tokenizer, texts)
    with batches(model, encoded, pad_id=pad_token_id(tokenizer), progress=bar) as runs:
        for batch in runs:
            out = model(**batch.inputs, **supported_kwargs(model, logits_to_keep=1))
            rows = out.logits[:, -1]            # row j belongs to prompt batch.indices[j]

Batches are left-padded (every prompt's last real token sits at position -1, so read
positions are negative offsets), sorted longest first (memory peaks, and fails, early), and
carry `position_ids` that count real tokens only (as `generate` does), so a padded row sees
the same positions as an unpadded one. Inside the `with` block the model is in eval mode and
autograd is off (`torch.inference_mode`); both are restored however the block ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import Progress

from skindeep.models.chat import PromptFormat, format_prompts

__all__ = [
    "Batch",
    "BatchRun",
    "ProgressLike",
    "PromptFormat",
    "accepts",
    "batches",
    "encode",
    "encode_prompts",
    "eval_mode",
    "left_pad",
    "length_sorted_batches",
    "model_device",
    "pad_token_id",
    "progress_callback",
    "supported_kwargs",
]

#: A progress sink: a callable given the number of items done so far, or a rich Progress.
ProgressLike = Callable[[int], None] | Progress | None


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


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], fmt: PromptFormat = "chat"
) -> list[list[int]]:
    """Format plain prompts (`format_prompts`: chat template or raw), then `encode` them."""
    return encode(tokenizer, format_prompts(tokenizer, prompts, fmt))


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


def accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes a keyword argument `name`."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def supported_kwargs(model: Any, **kwargs: Any) -> dict[str, Any]:
    """The subset of `kwargs` the model's forward accepts (e.g. `logits_to_keep`, `use_cache`)."""
    return {name: value for name, value in kwargs.items() if accepts(model, name)}


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


@dataclass(frozen=True)
class Batch:
    """One padded batch: `inputs` row j is the prompt at `indices[j]` of the encoded list."""

    indices: list[int]
    inputs: dict[str, torch.Tensor]

    @property
    def width(self) -> int:
        """Padded length of the batch (tokens per row)."""
        return int(self.inputs["input_ids"].shape[1])


class BatchRun:
    """Left-padded, length-sorted batches of encoded prompts, run in eval mode with autograd
    off: a context manager (the modes hold inside `with`) that iterates `Batch`es.

    The modes belong to the `with` block, not to the iterator, so an error in the caller's
    loop body restores them at once (a suspended generator would hold them until its
    exception is freed).
    """

    def __init__(
        self,
        model: Any,
        encoded: Sequence[Sequence[int]],
        *,
        pad_id: int,
        batch_size: int = 16,
        progress: ProgressLike = None,
        description: str = "forward",
        position_ids: bool | None = None,
    ) -> None:
        self.model = model
        self.encoded = encoded
        self.pad_id = pad_id
        self.order = length_sorted_batches([len(ids) for ids in encoded], batch_size)
        self.keep_positions = (
            accepts(model, "position_ids") if position_ids is None else position_ids
        )
        self.progress = progress
        self.description = description
        self._modes: ExitStack | None = None

    def __enter__(self) -> BatchRun:
        modes = ExitStack()
        modes.enter_context(eval_mode(self.model))
        modes.enter_context(torch.inference_mode())
        self._modes = modes
        return self

    def __exit__(self, *exc: object) -> None:
        modes, self._modes = self._modes, None
        if modes is not None:
            modes.close()

    def __iter__(self) -> Iterator[Batch]:
        if self._modes is None:
            raise RuntimeError("iterate batches inside `with batches(...) as runs:`")
        device = model_device(self.model)
        report = progress_callback(self.progress, len(self.encoded), self.description)
        done = 0
        for indices in self.order:
            inputs = left_pad([self.encoded[i] for i in indices], self.pad_id, device)
            if not self.keep_positions:
                inputs.pop("position_ids")
            yield Batch(indices, inputs)
            done += len(indices)
            report(done)


def batches(
    model: Any,
    encoded: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 16,
    progress: ProgressLike = None,
    description: str = "forward",
    position_ids: bool | None = None,
) -> BatchRun:
    """Left-padded, length-sorted batches of `encoded`, in eval mode with autograd off.

    Use as `with batches(...) as runs: for batch in runs: ...`. `position_ids`: None passes
    them when the model's forward accepts them, False never (`generate` derives its own from
    the mask). `progress` advances by a batch's prompts once the caller's loop body for that
    batch has run. Eval mode and inference mode hold inside the `with` block and are restored
    when it ends, however it ends.

    >>> from skindeep.models.chat import format_prompts
    >>> tok = micro_dpo.tokenizer
    >>> encoded = encode(tok, format_prompts(tok, ["hi", "how do i bake a cake ?"], "chat"))
    >>> with batches(micro_dpo.model, encoded, pad_id=pad_token_id(tok), batch_size=1) as runs:
    ...     got = [(b.indices, b.width) for b in runs]
    >>> got == [([1], len(encoded[1])), ([0], len(encoded[0]))]
    True
    """
    return BatchRun(
        model,
        encoded,
        pad_id=pad_id,
        batch_size=batch_size,
        progress=progress,
        description=description,
        position_ids=position_ids,
    )
