"""The forward-pass runtime: batch order, padding, modes and progress, on a tiny module."""

from __future__ import annotations

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
    got: list[Batch] = list(batches(model, ENCODED, pad_id=0, batch_size=2))
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
    for batch in batches(model, ENCODED, pad_id=0, batch_size=2):
        model(**batch.inputs)
    assert model.seen == [(False, False)] * 3
    assert model.training and torch.is_grad_enabled()
    for batch in batches(model, ENCODED, pad_id=0, batch_size=2):  # leaving early restores too
        model(**batch.inputs)
        break
    assert model.training and torch.is_grad_enabled()


def test_position_ids_only_where_accepted_or_wanted() -> None:
    plain = NoPositions()
    assert not accepts(plain, "position_ids") and accepts(Echo(), "position_ids")
    assert all("position_ids" not in b.inputs for b in batches(plain, ENCODED, pad_id=0))
    echo = Echo()
    assert all(
        "position_ids" not in b.inputs for b in batches(echo, ENCODED, pad_id=0, position_ids=False)
    )
    assert supported_kwargs(echo, use_cache=False, logits_to_keep=1) == {"use_cache": False}


def test_progress_counts_prompts_after_each_batch() -> None:
    seen: list[int] = []
    runs = batches(Echo(), ENCODED, pad_id=0, batch_size=2, progress=seen.append)
    before = [list(seen) for _ in runs]  # what was reported when each batch reached the caller
    assert before == [[], [2], [2, 4]]
    assert seen == [2, 4, 5]
    with Progress(disable=True) as bar:
        for _ in batches(Echo(), ENCODED, pad_id=0, progress=bar, description="x"):
            pass
        assert bar.tasks[0].completed == 5 and bar.tasks[0].description == "x"
