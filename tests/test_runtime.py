"""The forward-pass runtime: batch order, padding, modes and progress, on a tiny module."""

from __future__ import annotations

import pytest
import torch
from rich.progress import Progress
from torch import nn

from skindeep.runtime import Batch, accepts, batches, supported_kwargs


class Echo(nn.Module):
    """A forward that records what it is given (and whether autograd and dropout are on)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, input_ids, attention_mask, position_ids=None, use_cache=None):
        self.seen.append((torch.is_grad_enabled(), self.training))
        return input_ids


class NoPositions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        return input_ids


ENCODED = [[1], [2, 3, 4], [5, 6], [7, 8, 9, 10], [11]]


def test_batches_are_length_sorted_left_padded_and_cover_every_prompt() -> None:
    model = Echo()
    with batches(model, ENCODED, pad_id=0, batch_size=2) as runs:
        got: list[Batch] = list(runs)
    assert [b.indices for b in got] == [[3, 1], [2, 0], [4]]
    assert got[0].inputs["input_ids"].tolist() == [[7, 8, 9, 10], [0, 2, 3, 4]]
    assert got[0].inputs["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert got[0].inputs["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 1, 2]]
    assert got[1].width == 2
    for b in got:  # the last real token of every row sits at -1
        for row, i in zip(b.inputs["input_ids"].tolist(), b.indices, strict=True):
            assert row[len(row) - len(ENCODED[i]) :] == ENCODED[i]


def test_eval_mode_and_no_grad_hold_inside_and_are_restored() -> None:
    model = Echo()
    model.train()
    with batches(model, ENCODED, pad_id=0, batch_size=2) as runs:
        for batch in runs:
            model(**batch.inputs)
    assert model.seen == [(False, False)] * 3
    assert model.training and torch.is_grad_enabled()
    with batches(model, ENCODED, pad_id=0, batch_size=2) as runs:  # leaving early restores too
        for batch in runs:
            model(**batch.inputs)
            break
    assert model.training and torch.is_grad_enabled()
    # an error restores them at once, even while the exception (and its frames) lives on
    with pytest.raises(ValueError) as kept, batches(model, ENCODED, pad_id=0) as runs:
        for _ in runs:
            raise ValueError("stop")
    assert kept.value is not None
    assert model.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    with pytest.raises(RuntimeError, match="inside `with batches"):
        list(batches(model, ENCODED, pad_id=0))


def test_position_ids_only_where_accepted_or_wanted() -> None:
    plain, echo = NoPositions(), Echo()
    assert not accepts(plain, "position_ids") and accepts(echo, "position_ids")
    for model, wanted in ((plain, None), (echo, False)):
        with batches(model, ENCODED, pad_id=0, position_ids=wanted) as runs:
            assert all("position_ids" not in b.inputs for b in runs)
    with batches(echo, ENCODED, pad_id=0) as runs:
        assert all("position_ids" in b.inputs for b in runs)
    assert supported_kwargs(echo, use_cache=False, logits_to_keep=1) == {"use_cache": False}


def test_progress_counts_prompts_after_each_batch() -> None:
    seen: list[int] = []
    with batches(Echo(), ENCODED, pad_id=0, batch_size=2, progress=seen.append) as runs:
        before = [list(seen) for _ in runs]  # reported when each batch reached the caller
    assert before == [[], [2], [2, 4]]
    assert seen == [2, 4, 5]
    with Progress(disable=True) as bar:
        with batches(Echo(), ENCODED, pad_id=0, progress=bar, description="x") as runs:
            for _ in runs:
                pass
        assert bar.tasks[0].completed == 5 and bar.tasks[0].description == "x"
