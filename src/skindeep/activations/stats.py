"""Streaming per-class moments of activations: memory independent of the number of prompts.

Batches are merged with Chan et al.'s pairwise update (mean and summed squared deviations, in
float64), which avoids the cancellation of sum-of-squares minus n*mean^2 on residual streams
with large means. The d x d scatter matrix is kept only when asked (`full_covariance=True`):
for d = 4096 and 32 layers it is 4 GiB per class in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skindeep.activations.spec import CollectionSpec, Label


@dataclass
class Moments:
    """Count, mean, summed squared deviations (diagonal) and optional scatter of one class."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    scatter: np.ndarray | None

    @classmethod
    def of_batch(cls, x: np.ndarray, full_covariance: bool) -> Moments:
        """Moments of the rows of x [b, ..., d], in float64."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        centered = x - mean
        scatter = np.einsum("b...i,b...j->...ij", centered, centered) if full_covariance else None
        return cls(len(x), mean, np.einsum("b...,b...->...", centered, centered), scatter)

    def merge(self, other: Moments) -> None:
        """Fold another sample's moments into this one (Chan's parallel update), in place."""
        n = self.n + other.n
        delta = other.mean - self.mean
        weight = self.n * other.n / n
        self.mean += delta * (other.n / n)
        self.m2 += other.m2 + delta**2 * weight
        if self.scatter is not None and other.scatter is not None:
            self.scatter += other.scatter + np.einsum("...i,...j->...ij", delta, delta) * weight
        self.n = n

    def copy(self) -> Moments:
        """An independent copy."""
        scatter = None if self.scatter is None else self.scatter.copy()
        return Moments(self.n, self.mean.copy(), self.m2.copy(), scatter)


class StreamingStats:
    """Per-label count, mean, variance, second moment and (optionally) covariance of activations.

    A sink for `collect`, or fed directly with `update(acts, labels)`. Shapes follow the
    activations without the row axis: [L, d] (or [P, L, d]); covariance adds a trailing d.
    """

    def __init__(self, full_covariance: bool = False) -> None:
        self.full_covariance = full_covariance
        self.spec: CollectionSpec | None = None
        self._classes: dict[Label, Moments] = {}

    # ---- sink interface ----------------------------------------------------------------------

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Remember the run's spec (moments already held are kept and extended)."""
        self.spec = spec

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """Fold one batch in (prompt order does not matter for moments)."""
        self.update(acts, labels)

    def end(self) -> None:
        """Nothing to finish."""

    # ---- accumulation ------------------------------------------------------------------------

    def update(self, acts: np.ndarray, labels: Sequence[Label]) -> None:
        """Fold rows acts[i] (of class labels[i]) into the per-class moments."""
        acts = np.asarray(acts)
        if len(labels) != len(acts):
            raise ValueError(f"{len(labels)} labels for {len(acts)} rows")
        label_array = np.asarray(labels, dtype=object)
        for label in dict.fromkeys(labels):
            batch = Moments.of_batch(acts[label_array == label], self.full_covariance)
            held = self._classes.get(label)
            if held is None:
                self._classes[label] = batch
            elif held.mean.shape != batch.mean.shape:
                raise ValueError(f"rows of shape {batch.mean.shape}, expected {held.mean.shape}")
            else:
                held.merge(batch)

    # ---- results -----------------------------------------------------------------------------

    @property
    def labels(self) -> list[Label]:
        """Labels seen so far, in first-seen order."""
        return list(self._classes)

    def moments(self, label: Label | None = None) -> Moments:
        """The moments of one label, or of all labels pooled (None)."""
        if label is not None:
            if label not in self._classes:
                raise KeyError(f"no activations with label {label!r}; labels: {self.labels}")
            return self._classes[label]
        if not self._classes:
            raise KeyError("no activations collected yet")
        parts = list(self._classes.values())
        pooled = parts[0].copy()
        for part in parts[1:]:
            pooled.merge(part)
        return pooled

    def n(self, label: Label | None = None) -> int:
        """Number of prompts of a label (all labels when None)."""
        return self.moments(label).n

    def mean(self, label: Label | None = None) -> np.ndarray:
        """Mean activation [L, d] (float64)."""
        return self.moments(label).mean.copy()

    def variance(self, label: Label | None = None, ddof: int = 1) -> np.ndarray:
        """Per-coordinate variance [L, d] with `ddof` (1: sample variance)."""
        m = self.moments(label)
        if m.n - ddof <= 0:
            raise ValueError(f"variance with ddof={ddof} needs more than {ddof} rows, got {m.n}")
        return m.m2 / (m.n - ddof)

    def second_moment(self, label: Label | None = None) -> np.ndarray:
        """Uncentered per-coordinate second moment E[x^2] [L, d]."""
        m = self.moments(label)
        return m.m2 / m.n + m.mean**2

    def covariance(self, label: Label | None = None, ddof: int = 1) -> np.ndarray:
        """Covariance [L, d, d]; only when built with full_covariance=True."""
        m = self.moments(label)
        if m.scatter is None:
            raise ValueError("covariance needs StreamingStats(full_covariance=True)")
        if m.n - ddof <= 0:
            raise ValueError(f"covariance with ddof={ddof} needs more than {ddof} rows, got {m.n}")
        return m.scatter / (m.n - ddof)

    @property
    def nbytes(self) -> int:
        """Memory held by the moments, in bytes."""
        return sum(
            m.mean.nbytes + m.m2.nbytes + (0 if m.scatter is None else m.scatter.nbytes)
            for m in self._classes.values()
        )
