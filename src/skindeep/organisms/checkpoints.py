"""Checkpoint selection on held-out behaviour: keep the best checkpoint of a training run.

Every `every` steps the policy's greedy refusal is scored on validation prompts the run never
trained on (harmful minus harmless refusal, degenerate outputs counted against), and the best
checkpoint is restored at the end (ties: the later one). The RL recipes validate on held-out
prompts of the training topics; the other recipes, when `select_every` is set, on two whole
training topics left out of their data (`data.organism_data_split`), the closest proxy for the
held-out evaluation topics that a recipe may look at. The evaluation topics are never used.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.organisms.behaviour import behaviour_on
from skindeep.organisms.data import AlignmentData


def split_validation(data: AlignmentData, n_val: int) -> tuple[AlignmentData, AlignmentData | None]:
    """(training data, validation data): the last `n_val` prompts of each class held out.

    `n_val` shrinks to a quarter of the smaller class; with nothing to hold out, no validation.
    """
    n = min(n_val, len(data.harmful) // 4, len(data.harmless) // 4)
    if n < 1:
        return data, None
    return (
        data.subset(slice(None, -n), slice(None, -n)),
        data.subset(slice(-n, None), slice(-n, None)),
    )


def selection_score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    val: AlignmentData,
    max_new_tokens: int,
) -> float:
    """Harmful minus harmless refusal on validation prompts (degenerate counts against)."""
    b = behaviour_on(model, tokenizer, val.harmful, val.harmless, max_new_tokens)
    return b.harmful.rate - b.harmless.rate


class CheckpointSelector:
    """An `optimise` step callback that scores the model every `every` steps (and at the last
    step) on `val` and keeps a copy of the trainable weights of the best checkpoint."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        val: AlignmentData,
        every: int,
        last_step: int,
        max_new_tokens: int,
    ) -> None:
        self.model, self.tokenizer, self.val = model, tokenizer, val
        self.every, self.last_step, self.max_new_tokens = every, last_step, max_new_tokens
        self.trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        self.checkpoints: list[tuple[int, float]] = []
        self.best_score = -float("inf")
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, step_index: int, _loss: float) -> None:
        """Score and maybe keep the checkpoint after step `step_index` (0-based)."""
        done = step_index + 1
        if done % self.every and done != self.last_step:
            return
        was_training = self.model.training
        score = selection_score(self.model, self.tokenizer, self.val, self.max_new_tokens)
        self.model.train(was_training)
        self.checkpoints.append((done, round(score, 4)))
        if score >= self.best_score:  # ties: the later checkpoint (more training)
            params = dict(self.model.named_parameters())
            self.best_score, self.best_step = score, done
            self.best_state = {k: params[k].detach().clone() for k in self.trainable}

    def restore(self) -> dict:
        """Load the best checkpoint's weights into the model; the record for organism.json."""
        if self.best_state is not None:
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for k, v in self.best_state.items():
                    params[k].copy_(v)
        return {
            "selected_step": self.best_step,
            "validation": self.checkpoints,
            "n_validation": len(self.val.harmful),
        }
