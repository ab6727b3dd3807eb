"""Rank correlation across models: Spearman, its bootstrap CI, permutation p-value, partial, Holm.

Pure numpy/scipy: arrays over models in, typed values out. A statistic that is undefined on its
input (fewer than `MIN_MODELS` models, a constant predictor or target) is an `Undefined` with a
reason, never NaN: a study table must say why a cell is empty.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

FloatArray = NDArray[np.float64]
MIN_MODELS = 4
"""Fewest models any cross-model statistic is computed on (below it: Undefined)."""


@dataclass(frozen=True)
class Undefined:
    """A statistic that does not exist on this input, and why."""

    reason: str


@dataclass(frozen=True)
class Interval:
    """A closed interval [low, high] (a confidence interval, or the range of leave-out values)."""

    low: float
    high: float

    def as_list(self) -> list[float]:
        """[low, high], the form `study.json` stores."""
        return [self.low, self.high]


def as_vector(x: ArrayLike, name: str, n: int | None = None) -> FloatArray:
    """`x` as a finite 1-D float64 array (of length n when given), or a ValueError naming it."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D over models, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values, expected one per model ({n})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values (drop those models first)")
    return arr


def spearman_along(x: ArrayLike, y: ArrayLike) -> FloatArray:
    """Spearman rho of x and y along the last axis (average ranks for ties), NaN where undefined.

    x, y: [..., n] broadcastable. Returns [...]. Vectorised for bootstrap and permutation
    batches; `spearman` is the checked scalar entry point.

    >>> float(spearman_along([1, 2, 3, 4], [10, 20, 40, 30]))
    0.8
    """
    rx = stats.rankdata(np.asarray(x, dtype=np.float64), axis=-1)
    ry = stats.rankdata(np.asarray(y, dtype=np.float64), axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    num = (rx * ry).sum(axis=-1)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(rho, -1.0, 1.0)


def _why_undefined(x: FloatArray, y: FloatArray) -> str | None:
    if x.shape[0] < MIN_MODELS:
        return f"{x.shape[0]} models (need at least {MIN_MODELS})"
    if np.ptp(x) == 0:
        return "predictor is constant across models"
    if np.ptp(y) == 0:
        return "target is constant across models"
    return None


def spearman(x: ArrayLike, y: ArrayLike) -> float | Undefined:
    """Spearman rho between predictor x[n] and target y[n] over n models.

    >>> spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    0.8207826816681233
    >>> spearman([1, 1, 1, 1], [1, 2, 3, 4])
    Undefined(reason='predictor is constant across models')
    """
    xv, yv = as_vector(x, "x"), as_vector(y, "y")
    if xv.shape != yv.shape:
        raise ValueError(f"x and y differ in length: {xv.shape[0]} vs {yv.shape[0]}")
    reason = _why_undefined(xv, yv)
    return Undefined(reason) if reason else float(spearman_along(xv, yv))


def bootstrap_ci(
    x: ArrayLike,
    y: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Interval | Undefined:
    """Paired BCa bootstrap CI of Spearman rho, resampling models (`scipy.stats.bootstrap`).

    x, y: [n]. A resample in which x or y is constant has no rho; such resamples are dropped
    and the BCa interval is formed from the rest (the bootstrap conditional on a defined
    statistic), through scipy's own BCa (`bootstrap_result=`, `n_resamples=0`). When every
    resample gives the same rho the interval is [rho, rho]. Without degenerate resamples
    the result is exactly `scipy.stats.bootstrap((x, y), ..., paired=True, method="BCa",
    rng=seed)`.

    >>> bootstrap_ci([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5], n_resamples=999)
    Interval(low=0.5, high=1.0)
    """
    xv, yv = as_vector(x, "x"), as_vector(y, "y", len(np.asarray(x)))
    if reason := _why_undefined(xv, yv):
        return Undefined(reason)

    def statistic(a: FloatArray, b: FloatArray, axis: int = -1) -> FloatArray:
        return spearman_along(np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1))

    common = {"paired": True, "method": "BCa", "confidence_level": confidence, "vectorized": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap((xv, yv), statistic, n_resamples=n_resamples, rng=seed, **common)
        dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
        defined = dist[np.isfinite(dist)]
        if defined.size < max(2, n_resamples // 2):  # most resamples must have a rho
            return Undefined(f"only {defined.size} of {n_resamples} bootstrap resamples had a rho")
        if np.ptp(defined) == 0:
            return Interval(float(defined[0]), float(defined[0]))
        if defined.size < dist.size:
            res = stats.bootstrap(
                (xv, yv),
                statistic,
                n_resamples=0,
                bootstrap_result=SimpleNamespace(bootstrap_distribution=defined),
                **common,
            )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return Undefined("BCa interval undefined (degenerate jackknife: one model sets the ranks)")
    return Interval(low, high)


def permutation_p(
    x: ArrayLike, y: ArrayLike, *, n_permutations: int = 9999, seed: int = 0
) -> float | Undefined:
    """Two-sided permutation p-value of Spearman rho (`scipy.stats.permutation_test`, pairings).

    x, y: [n]. The pairing of x with y is permuted; p = min(1, 2 * min(P(null <= rho),
    P(null >= rho))) as scipy defines it. Exact (all n! pairings) when n! <= n_permutations,
    else Monte Carlo with scipy's (count + 1) / (n_permutations + 1) correction.

    >>> permutation_p([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    0.08333333333333333
    """
    xv, yv = as_vector(x, "x"), as_vector(y, "y", len(np.asarray(x)))
    if reason := _why_undefined(xv, yv):
        return Undefined(reason)

    def statistic(a: FloatArray, axis: int = -1) -> FloatArray:
        return spearman_along(np.moveaxis(a, axis, -1), yv)

    res = stats.permutation_test(
        (xv,),
        statistic,
        permutation_type="pairings",
        n_resamples=n_permutations,
        vectorized=True,
        alternative="two-sided",
        rng=seed,
    )
    return float(res.pvalue)


def leave_out_range(
    x: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None
) -> Interval | Undefined:
    """[min, max] of Spearman rho over leave-one-out subsets of the models.

    x, y: [n]; groups: [n] labels (None: each model its own group, i.e. leave-one-model-out).
    Each distinct label is left out in turn; subsets where rho is undefined (fewer than
    `MIN_MODELS` models left, or constant) are skipped.

    >>> leave_out_range([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    Interval(low=0.8, high=1.0)
    """
    xv = as_vector(x, "x")
    yv = as_vector(y, "y", xv.shape[0])
    labels = np.arange(xv.shape[0]) if groups is None else np.asarray(groups)
    if labels.shape != xv.shape:
        raise ValueError(
            f"groups has shape {labels.shape}, expected one label per model {xv.shape}"
        )
    uniq = np.unique(labels)
    if uniq.size < 2:
        return Undefined("only one group: nothing to leave out")
    rhos = []
    for label in uniq:
        keep = labels != label
        if _why_undefined(xv[keep], yv[keep]) is None:
            rhos.append(float(spearman_along(xv[keep], yv[keep])))
    if not rhos:
        return Undefined("rho is undefined on every leave-out subset")
    return Interval(min(rhos), max(rhos))


def partial_spearman(x: ArrayLike, y: ArrayLike, controls: ArrayLike) -> float | Undefined:
    """Spearman rho of x and y controlling for controls[n] or [n, k] (Pearson of rank residuals).

    Ranks of x and y are each regressed (least squares, with intercept) on the ranks of the
    controls; the result is the Pearson correlation of the two residual vectors.

    Here x and y agree only through the control; within each control level they disagree:

    >>> round(partial_spearman([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], [1, 1, 2, 2, 3, 3]), 6)
    -1.0
    """
    xv = as_vector(x, "x")
    yv = as_vector(y, "y", xv.shape[0])
    z = np.asarray(controls, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[0] != xv.shape[0] or not np.isfinite(z).all():
        raise ValueError(
            f"controls must be finite [n] or [n, k] with n={xv.shape[0]}, got {z.shape}"
        )
    if reason := _why_undefined(xv, yv):
        return Undefined(reason)
    if xv.shape[0] < MIN_MODELS + z.shape[1]:
        return Undefined(f"{xv.shape[0]} models for {z.shape[1]} control(s)")
    design = np.column_stack([np.ones(xv.shape[0]), stats.rankdata(z, axis=0)])
    resid = []
    for v in (xv, yv):
        r = stats.rankdata(v)
        coef, *_ = np.linalg.lstsq(design, r, rcond=None)
        resid.append(r - design @ coef)
    scale = max(float(np.abs(stats.rankdata(xv)).max()), 1.0) * 1e-9
    if min(np.abs(resid[0]).max(), np.abs(resid[1]).max()) <= scale:
        return Undefined("the control explains the predictor's or target's ranks exactly")
    rho = float(np.corrcoef(resid[0], resid[1])[0, 1])
    return float(np.clip(rho, -1.0, 1.0))


def holm(p_values: Sequence[float | Undefined]) -> list[float | Undefined]:
    """Holm step-down adjusted p-values; Undefined entries stay Undefined and leave the family.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)), m = number defined.

    >>> holm([0.01, 0.04, 0.03, Undefined("constant")])
    [0.03, 0.06, 0.06, Undefined(reason='constant')]
    """
    defined = [(i, float(p)) for i, p in enumerate(p_values) if not isinstance(p, Undefined)]
    m = len(defined)
    out: list[float | Undefined] = list(p_values)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(defined, key=lambda t: t[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
