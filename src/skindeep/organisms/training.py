"""A small, deterministic causal-LM training loop for organisms and recipes on CPU.

Transformers' Trainer costs more per step than a 1M-parameter model's forward pass, so organisms
train with this loop: right-padded batches, loss only where labels are set, AdamW with linear
warm-up and decay, a seeded sampler (same seed and data give identical weights).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.errors import SkindeepError
from skindeep.models.chat import format_conversation, format_user_turn

IGNORE = -100


@dataclass(frozen=True)
class Tokenized:
    """Token ids and labels (IGNORE where no loss is taken) of one training sequence."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def tokenize_chat(
    tokenizer: PreTrainedTokenizerBase,
    user: str,
    assistant: str,
    max_len: int,
    system: str | None = None,
) -> Tokenized:
    """A chat exchange with loss on the assistant turn only (template end tokens included).

    The prompt is `format_user_turn` (the one formatter, fallback included); the reply is what
    `format_conversation` adds after it, or the reply and EOS when the template rewrites
    earlier turns.
    """
    prompt = format_user_turn(tokenizer, user, system)
    full = format_conversation(tokenizer, user, assistant, system)
    if not full.startswith(prompt):  # templates that rewrite earlier turns: fall back to joining
        full = prompt + assistant + (tokenizer.eos_token or "")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[:max_len]
    labels = ([IGNORE] * len(p_ids) + c_ids)[:max_len]
    return Tokenized(tuple(ids), tuple(labels))


def tokenize_raw(tokenizer: PreTrainedTokenizerBase, text: str, max_len: int) -> Tokenized:
    """Plain text with loss on every token after the first, ending in EOS."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id, *ids]
    if tokenizer.eos_token_id is not None:
        ids = [*ids, tokenizer.eos_token_id]
    ids = ids[:max_len]
    return Tokenized(tuple(ids), tuple(ids))


def collate(batch: Sequence[Tokenized], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions get no attention and no loss."""
    width = max(len(t.input_ids) for t in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, t in enumerate(batch):
        n = len(t.input_ids)
        ids[i, :n] = torch.tensor(t.input_ids)
        labels[i, :n] = torch.tensor(t.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class TrainConfig(BaseModel):
    """Optimisation settings of one training run, validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(300, ge=1, description="optimisation steps")
    lr: float = Field(3e-3, gt=0, description="peak learning rate (linear warm-up and decay)")
    batch_size: int = Field(32, ge=1, description="examples per step")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_frac: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    seed: int = Field(0, description="seed of the data order")


@dataclass
class TrainStats:
    """What a training run did, recorded in the organism folder."""

    steps: int
    n_examples: int
    trainable_params: int
    seconds: float
    loss_first: float
    loss_last: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (the loss curve thinned to at most 50 points)."""
        d = asdict(self)
        stride = max(1, len(self.losses) // 50)
        d["losses"] = [round(x, 5) for x in self.losses[::stride]]
        return d


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up then linear decay to 10% of the peak rate."""
    warm = max(1, math.ceil(config.warmup_frac * config.steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, config.steps - warm)
        return 1.0 - 0.9 * frac

    return f


def sequence_logps(
    model: PreTrainedModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of log-probabilities of the labelled tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    mask = labels != IGNORE
    tok_logp = torch.gather(logp, 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (tok_logp * mask).sum(-1), mask.sum(-1)


def optimise(
    model: PreTrainedModel,
    n_items: int,
    step_loss: Callable[[list[int]], torch.Tensor],
    config: TrainConfig,
    on_step: Callable[[int, float], bool | None] | None = None,
) -> TrainStats:
    """Minimise `step_loss(batch_indices)` over the trainable parameters for `config.steps` steps.

    `on_step(step, loss)` runs after each step; returning True stops training there (early
    stopping; `steps` in the stats is then the number of steps taken).

    Batches are drawn without replacement from a seeded permutation of `range(n_items)`,
    reshuffled each epoch, so the same seed and data reproduce the same weights. A loss that is
    not finite stops training before its step is applied (SkindeepError).
    """
    if n_items == 0:
        raise ValueError("no training examples")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config))
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model.train()
    losses: list[float] = []
    bs = min(config.batch_size, n_items)
    order = torch.randperm(n_items, generator=gen).tolist()
    cursor = 0
    start = time.perf_counter()
    for step in range(config.steps):
        if cursor + bs > len(order):
            order = torch.randperm(n_items, generator=gen).tolist()
            cursor = 0
        loss = step_loss(order[cursor : cursor + bs])
        cursor += bs
        value = float(loss.detach())
        if not math.isfinite(value):  # checked before backward: no step with a NaN is taken
            raise SkindeepError(
                f"the training loss is {value} at step {step + 1}; training stopped before the "
                f"weights were corrupted; lower the learning rate (lr={config.lr}), train in "
                "float32, or check the data"
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(value)
        if on_step is not None and on_step(step, losses[-1]):
            break
    model.eval()
    k = max(1, len(losses) // 10)
    return TrainStats(
        steps=len(losses),
        n_examples=n_items,
        trainable_params=sum(p.numel() for p in params),
        seconds=round(time.perf_counter() - start, 3),
        loss_first=sum(losses[:k]) / k,
        loss_last=sum(losses[-k:]) / k,
        losses=losses,
    )


def train_causal_lm(
    model: PreTrainedModel,
    data: Sequence[Tokenized],
    config: TrainConfig,
    pad_id: int,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainStats:
    """Next-token cross-entropy on the labelled tokens of `data`."""

    def step_loss(idx: list[int]) -> torch.Tensor:
        return model(**collate([data[i] for i in idx], pad_id)).loss

    return optimise(model, len(data), step_loss, config, on_step)
