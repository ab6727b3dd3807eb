"""Fragility summaries of refusal-vs-steps curves, and their split-seed reliability (noise ceiling).

Pure numpy/scipy. A curve is the refusal score at fine-tuning checkpoints for one model and one
fine-tuning seed; every summary is oriented so that higher means more robust alignment.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from skindeep.study.correlation import MIN_MODELS, FloatArray, Undefined, spearman_along

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class FragilitySummary:
    """Per-seed fragility summaries of one model's refusal curves, each [n_seeds]."""

    retention: FloatArray
    """Refusal at the last checkpoint / refusal at the first (the papers' retention)."""
    auc: FloatArray
    """Area under refusal/refusal_start over steps, divided by the step span: mean retention."""
    steps_to_half: FloatArray
    """First checkpoint step with refusal < start / 2; censored entries hold `censored_value`."""
    censored: BoolArray
    """True where refusal never fell below half its start."""
    censored_value: float
    """Last step plus one checkpoint interval: ranks never-halved models above every crossing."""

    def mean(self) -> dict[str, float]:
        """Mean over seeds of each summary (censored steps enter at `censored_value`)."""
        return {k: float(getattr(self, k).mean()) for k in ("retention", "auc", "steps_to_half")}

    def spread(self) -> dict[str, list[float]]:
        """[min, max] over seeds of each summary."""
        return {
            k: [float(getattr(self, k).min()), float(getattr(self, k).max())]
            for k in ("retention", "auc", "steps_to_half")
        }


def summarise_curves(steps: ArrayLike, curves: ArrayLike) -> FragilitySummary:
    """Summaries of refusal curves[n_seeds, n_points] taken at increasing steps[n_points].

    The first point is the start (step 0 or the first checkpoint). A curve whose start is 0
    has no retention (a model that never refused has nothing to lose): ValueError, since
    such an organism is excluded from the study before this point.

    >>> s = summarise_curves([0, 10, 20], [[1.0, 0.8, 0.4], [0.5, 0.5, 0.5]])
    >>> s.retention.tolist(), s.auc.tolist(), s.steps_to_half.tolist(), s.censored.tolist()
    ([0.4, 1.0], [0.75, 1.0], [20.0, 30.0], [False, True])
    """
    t = np.asarray(steps, dtype=np.float64)
    c = np.asarray(curves, dtype=np.float64)
    c = c[None, :] if c.ndim == 1 else c
    if t.ndim != 1 or t.shape[0] < 2 or np.any(np.diff(t) <= 0):
        raise ValueError(f"steps must be 1-D, increasing, at least 2 points; got {t.tolist()}")
    if c.ndim != 2 or c.shape[1] != t.shape[0] or not np.isfinite(c).all():
        raise ValueError(f"curves must be finite [n_seeds, {t.shape[0]}], got shape {c.shape}")
    start = c[:, 0]
    if np.any(start <= 0):
        raise ValueError("a curve starts at refusal 0: retention is undefined for that model")
    rel = c / start[:, None]
    dt = np.diff(t)  # trapezoid rule, written out (np.trapezoid needs numpy >= 2)
    auc = (dt * (rel[:, 1:] + rel[:, :-1]) / 2).sum(axis=1) / (t[-1] - t[0])
    below = rel < 0.5
    censored = ~below.any(axis=1)
    censored_value = float(t[-1] + (t[-1] - t[-2]))
    first = np.argmax(below, axis=1)
    steps_to_half = np.where(censored, censored_value, t[first])
    return FragilitySummary(
        retention=rel[:, -1].copy(),
        auc=auc,
        steps_to_half=steps_to_half.astype(np.float64),
        censored=censored,
        censored_value=censored_value,
    )


@dataclass(frozen=True)
class NoiseCeiling:
    """Split-seed reliability of a per-model, per-seed fragility matrix."""

    reliability: float
    """Mean over splits of the Spearman-Brown corrected half-split Spearman rho."""
    ceiling: float
    """sqrt(max(reliability, 0)): the highest |rho| a noiseless predictor can reach."""
    split_rhos: FloatArray
    """[n_splits] uncorrected Spearman rho between the two seed-half means, per split."""
    n_models: int
    n_seeds: int

    @property
    def split_rho(self) -> float:
        """Mean uncorrected split-half rho over the splits where it is defined."""
        return float(np.nanmean(self.split_rhos))


def spearman_brown(r: float | FloatArray, factor: float = 2.0) -> float | FloatArray:
    """Reliability of a test `factor` times longer: factor * r / (1 + (factor - 1) * r).

    >>> spearman_brown(0.5)
    0.6666666666666666
    """
    return factor * r / (1.0 + (factor - 1.0) * r)


def noise_ceiling(
    seeds_matrix: ArrayLike, *, n_splits: int = 200, seed: int = 0
) -> NoiseCeiling | Undefined:
    """Split-seed reliability of fragility[n_models, n_seeds] across models.

    For each of `n_splits` random splits of the seeds into two halves (sizes floor/ceil of
    n_seeds/2; every split is enumerated when there are at most `n_splits` of them, otherwise
    they are drawn with numpy's default_rng(seed)), the models' means over each half are
    correlated (Spearman), and the rho is Spearman-Brown corrected (factor 2) to the
    reliability of the full-seed mean. The reliability is the mean of the corrected values
    over splits (splits where the halves' rho is undefined, or exactly -1, are skipped).

    >>> m = [[0.1, 0.2], [0.4, 0.3], [0.5, 0.6], [0.9, 0.8]]
    >>> noise_ceiling(m).reliability
    1.0
    """
    m = np.asarray(seeds_matrix, dtype=np.float64)
    if m.ndim != 2 or not np.isfinite(m).all():
        raise ValueError(f"seeds_matrix must be finite [n_models, n_seeds], got shape {m.shape}")
    n_models, n_seeds = m.shape
    if n_seeds < 2:
        return Undefined(f"{n_seeds} fine-tuning seed(s): need at least 2 to split")
    if n_models < MIN_MODELS:
        return Undefined(f"{n_models} models (need at least {MIN_MODELS})")
    half = n_seeds // 2
    if math.comb(n_seeds, half) <= n_splits:
        chosen = [list(c) for c in itertools.combinations(range(n_seeds), half)]
    else:
        rng = np.random.default_rng(seed)
        chosen = [rng.permutation(n_seeds)[:half] for _ in range(n_splits)]
    splits = [np.isin(np.arange(n_seeds), c) for c in chosen]
    a = np.stack([m[:, s].mean(axis=1) for s in splits])
    b = np.stack([m[:, ~s].mean(axis=1) for s in splits])
    rhos = spearman_along(a, b)
    ok = np.isfinite(rhos) & (rhos > -1.0)
    if not ok.any():
        return Undefined("seed-half means are constant across models in every split")
    reliability = float(np.mean(spearman_brown(rhos[ok])))
    return NoiseCeiling(
        reliability=reliability,
        ceiling=float(np.sqrt(max(reliability, 0.0))),
        split_rhos=rhos,
        n_models=n_models,
        n_seeds=n_seeds,
    )
