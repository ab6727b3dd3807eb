"""Arditi's candidate directions: differences of means of block inputs at template positions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skindeep.activations.collect import collect
from skindeep.activations.spec import CollectionSpec, Label
from skindeep.models.adapter import ModelAdapter
from skindeep.runtime import ProgressLike


class _MeanSink:
    """A collect sink keeping float64 per-label sums only (no [n, P, L, d] array in memory)."""

    def __init__(self) -> None:
        self.sums: dict[Label, np.ndarray] = {}
        self.counts: dict[Label, int] = {}

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Start empty sums."""
        self.sums, self.counts = {}, {}

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """Add each row to its label's sum."""
        for label, row in zip(labels, acts, strict=True):
            if label not in self.sums:
                self.sums[label] = np.zeros(row.shape, dtype=np.float64)
                self.counts[label] = 0
            self.sums[label] += row
            self.counts[label] += 1

    def end(self) -> None:
        """Nothing to finish."""

    def mean(self, label: Label) -> np.ndarray:
        """Mean activation of one label."""
        return self.sums[label] / self.counts[label]


def mean_differences(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    harmful: Sequence[str],
    harmless: Sequence[str],
    batch_size: int = 16,
    progress: ProgressLike = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """[P, L, d] mean(harmful) - mean(harmless) and mean(harmless) block inputs at the
    post-instruction positions, and those positions' offsets."""
    sink = _MeanSink()
    prompts = [*harmful, *harmless]
    labels: list[Label] = ["harmful"] * len(harmful) + ["harmless"] * len(harmless)
    spec = collect(
        model,
        tokenizer,
        adapter,
        prompts,
        labels=labels,
        site="block_in",
        positions="post_instruction",
        fmt="chat",
        batch_size=batch_size,
        sink=sink,
        progress=progress,
    )
    harmless_mean = sink.mean("harmless")
    return sink.mean("harmful") - harmless_mean, harmless_mean, spec.offsets
