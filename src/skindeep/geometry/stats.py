"""Per-layer tests of harmful vs harmless activations: PERMANOVA, MMD, BH-FDR, linear probe.

Permutation tests are vectorised over permutations through the n x n (squared) distance matrix,
computed once per layer and shared by PERMANOVA and MMD.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import (
    BoolArray,
    FloatArray,
    as_float_array,
    check_binary_labels,
    check_min_rows,
    check_same_features,
)
from skindeep.geometry._probe import fit_score, stratified_split

PermanovaDistance = Literal["euclidean", "sqeuclidean"]
_PERM_CHUNK = 256
_TIE_RTOL = 1e-10


@dataclass(frozen=True)
class PermanovaResult:
    """One-way PERMANOVA: pseudo-F and its permutation p-value."""

    pseudo_f: float
    """(SS_between / (a - 1)) / (SS_within / (N - a))."""
    p_value: float
    """(#{F_perm >= F} + 1) / (n_perm + 1)."""
    n_perm: int
    """Number of label permutations drawn."""


@dataclass(frozen=True)
class MMDResult:
    """Unbiased RBF MMD^2 between two samples and its permutation p-value."""

    mmd2: float
    """Unbiased estimate of MMD^2 (can be slightly negative)."""
    p_value: float
    """(#{MMD^2_perm >= MMD^2} + 1) / (n_perm + 1)."""
    gamma: float
    """RBF parameter in k(x, y) = exp(-gamma ||x - y||^2)."""
    n_perm: int
    """Number of label permutations drawn."""


@dataclass(frozen=True)
class BHResult:
    """Benjamini-Hochberg adjusted p-values and the discoveries at level q."""

    adjusted: FloatArray
    """BH-adjusted p-values, same shape as the input."""
    reject: BoolArray
    """adjusted <= q."""
    q: float
    """False discovery rate level."""


@dataclass(frozen=True)
class LayerStatistics:
    """Per-layer harmful-vs-harmless statistics, with BH-FDR across layers for each test."""

    pseudo_f: FloatArray
    """[L] PERMANOVA pseudo-F."""
    permanova_p: FloatArray
    """[L] PERMANOVA permutation p-values."""
    permanova_p_adjusted: FloatArray
    """[L] BH-adjusted PERMANOVA p-values across layers."""
    permanova_reject: BoolArray
    """[L] PERMANOVA significant at FDR q."""
    mmd2: FloatArray
    """[L] unbiased RBF MMD^2."""
    mmd_p: FloatArray
    """[L] MMD permutation p-values."""
    mmd_p_adjusted: FloatArray
    """[L] BH-adjusted MMD p-values across layers."""
    mmd_reject: BoolArray
    """[L] MMD significant at FDR q."""
    gamma: FloatArray
    """[L] RBF parameter used at each layer (median heuristic unless given)."""
    probe_accuracy: FloatArray
    """[L] held-out logistic-regression accuracy."""
    n_perm: int
    """Permutations per test."""
    q: float
    """FDR level."""


def _check_n_perm(n_perm: int) -> int:
    """Validate a permutation count."""
    if int(n_perm) != n_perm or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm}")
    return int(n_perm)


def _sq_distances(z: FloatArray, gram: FloatArray | None = None) -> FloatArray:
    """Squared Euclidean distance matrix of the rows of z (centered first for accuracy);
    `gram`: the n x n Gram matrix of z - mean(z) when the caller already has it."""
    if gram is None:
        z = z - z.mean(axis=0)
        gram = z @ z.T
    sq_norms = np.diag(gram)
    sq = sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)
    return sq


def _permutations(labels: np.ndarray, n_perm: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded permutations of a label vector, in chunks of rows [b, N]."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_perm:
        b = min(_PERM_CHUNK, n_perm - done)
        yield rng.permuted(np.tile(labels, (b, 1)), axis=1)
        done += b


def _p_value(observed: float, null: FloatArray) -> float:
    """Permutation p-value (count + 1) / (n + 1), ties (up to rounding) counted as extreme."""
    threshold = observed - _TIE_RTOL * abs(observed)
    return float((np.sum(null >= threshold) + 1) / (null.size + 1))


def _pseudo_f(delta2: FloatArray, codes: np.ndarray, sizes: np.ndarray) -> FloatArray:
    """Pseudo-F for each row of group codes [b, N], given the squared dissimilarities delta2.

    With two groups one product serves both: for the 0/1 membership m of group 0, group 1's
    within-sum is 1^T delta2 1 - 2 m^T delta2 1 + m^T delta2 m (delta2 is symmetric).
    """
    n = delta2.shape[0]
    n_groups = sizes.size
    total = delta2.sum()
    ss_total = total / (2.0 * n)
    if n_groups == 2:
        member = (codes == 0).astype(np.float64)
        inside = np.einsum("bi,bi->b", member @ delta2, member)
        outside = total - 2.0 * (member @ delta2.sum(axis=0)) + inside
        ss_within = inside / (2.0 * sizes[0]) + outside / (2.0 * sizes[1])
    else:
        ss_within = np.zeros(codes.shape[0])
        for g in range(n_groups):
            member = (codes == g).astype(np.float64)
            ss_within += np.einsum("bi,bi->b", member @ delta2, member) / (2.0 * sizes[g])
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((ss_total - ss_within) / (n_groups - 1)) / (ss_within / (n - n_groups))


def _permanova_core(
    sq: FloatArray, codes: np.ndarray, n_perm: int, seed: int, distance: PermanovaDistance
) -> PermanovaResult:
    """PERMANOVA from a precomputed squared Euclidean distance matrix."""
    delta2 = sq if distance == "euclidean" else sq**2
    sizes = np.bincount(codes)
    observed = float(_pseudo_f(delta2, codes[None, :], sizes)[0])
    null = np.concatenate(
        [_pseudo_f(delta2, chunk, sizes) for chunk in _permutations(codes, n_perm, seed)]
    )
    return PermanovaResult(pseudo_f=observed, p_value=_p_value(observed, null), n_perm=n_perm)


def permanova(
    X: ArrayLike,
    labels: ArrayLike,
    n_perm: int = 1000,
    seed: int = 0,
    distance: PermanovaDistance = "euclidean",
) -> PermanovaResult:
    """One-way PERMANOVA (Anderson 2001) of the rows of X [N, d] grouped by `labels`.

    distance="euclidean" (default) feeds squared Euclidean distances into the pseudo-F, which
    then equals the classical multivariate trace F; "sqeuclidean" uses the squared Euclidean
    distance itself as the dissimilarity (so its square enters the sums).
    """
    x = as_float_array(X, "X", 2)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D of length {x.shape[0]}, got shape {lab.shape}")
    groups, codes = np.unique(lab, return_inverse=True)
    sizes = np.bincount(codes)
    if groups.size < 2:
        raise ValueError("labels must contain at least 2 groups")
    if sizes.min() < 2:
        raise ValueError(f"every group needs at least 2 samples, got sizes {sizes.tolist()}")
    if distance not in ("euclidean", "sqeuclidean"):
        raise ValueError(f"distance must be 'euclidean' or 'sqeuclidean', got {distance!r}")
    n_perm = _check_n_perm(n_perm)
    return _permanova_core(_sq_distances(x), codes, n_perm, seed, distance)


def _median_gamma(sq: FloatArray, m: int) -> float:
    """Median heuristic gamma = 1 / (2 median^2) over the cross-set distances of a pooled matrix."""
    median = float(np.median(np.sqrt(sq[:m, m:])))
    if median == 0.0:
        raise ValueError("median cross-set distance is 0; pass gamma explicitly")
    return 1.0 / (2.0 * median**2)


def _mmd2_rows(kernel: FloatArray, member: FloatArray) -> FloatArray:
    """Unbiased MMD^2 for each 0/1 membership row [b, N] (1 = first sample) on a pooled kernel."""
    m = member[0].sum()
    n = member.shape[1] - m
    diag = np.diag(kernel)
    total = kernel.sum()
    trace = diag.sum()
    k_member = member @ kernel
    row_sums = k_member.sum(axis=1)
    xx = np.einsum("bi,bi->b", k_member, member)
    xy = row_sums - xx
    yy = total - xx - 2.0 * xy
    diag_x = member @ diag
    diag_y = trace - diag_x
    return (xx - diag_x) / (m * (m - 1)) + (yy - diag_y) / (n * (n - 1)) - 2.0 * xy / (m * n)


def _mmd_core(sq: FloatArray, m: int, gamma: float | None, n_perm: int, seed: int) -> MMDResult:
    """MMD^2 and its permutation test from a pooled squared-distance matrix (first m = X)."""
    g = _median_gamma(sq, m) if gamma is None else float(gamma)
    kernel = np.exp(-g * sq)
    member = np.zeros(sq.shape[0])
    member[:m] = 1.0
    observed = float(_mmd2_rows(kernel, member[None, :])[0])
    if n_perm == 0:
        return MMDResult(mmd2=observed, p_value=float("nan"), gamma=g, n_perm=0)
    null = np.concatenate(
        [_mmd2_rows(kernel, chunk) for chunk in _permutations(member, n_perm, seed)]
    )
    return MMDResult(mmd2=observed, p_value=_p_value(observed, null), gamma=g, n_perm=n_perm)


def _check_two_samples(X: ArrayLike, Y: ArrayLike, gamma: float | None) -> tuple[FloatArray, int]:
    """Validate two samples [m, d], [n, d] (>= 2 rows each); return them stacked, and m."""
    x = as_float_array(X, "X", 2)
    y = as_float_array(Y, "Y", 2)
    check_min_rows(x, "X")
    check_min_rows(y, "Y")
    check_same_features(x, y, "X", "Y")
    if gamma is not None and (not np.isfinite(gamma) or gamma <= 0):
        raise ValueError(f"gamma must be a positive finite number or None, got {gamma}")
    return np.vstack([x, y]), x.shape[0]


def mmd2_unbiased(X: ArrayLike, Y: ArrayLike, gamma: float | None = None) -> float:
    """Unbiased RBF MMD^2 (Gretton et al. 2012); gamma=None: 1/(2 median^2) of cross distances."""
    z, m = _check_two_samples(X, Y, gamma)
    return _mmd_core(_sq_distances(z), m, gamma, 0, 0).mmd2


def mmd_test(
    X: ArrayLike, Y: ArrayLike, n_perm: int = 1000, seed: int = 0, gamma: float | None = None
) -> MMDResult:
    """Permutation test of MMD^2 between X and Y; gamma is fixed from the observed split."""
    z, m = _check_two_samples(X, Y, gamma)
    return _mmd_core(_sq_distances(z), m, gamma, _check_n_perm(n_perm), seed)


def benjamini_hochberg(pvals: ArrayLike, q: float = 0.05) -> BHResult:
    """Benjamini-Hochberg step-up adjusted p-values and rejections at FDR level q."""
    p = as_float_array(pvals, "pvals", 1)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    m = p.size
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(monotone, 1.0)
    return BHResult(adjusted=adjusted, reject=adjusted <= q, q=float(q))


def probe_accuracy(X: ArrayLike, y: ArrayLike, test_size: float = 0.3, seed: int = 0) -> float:
    """Held-out accuracy of a standardised logistic regression on one seeded stratified split."""
    x = as_float_array(X, "X", (1, 2))
    labels = check_binary_labels(y, x.shape[0], "y")
    train, test = stratified_split(labels, test_size, seed)
    return fit_score(x[train], labels[train], x[test], labels[test])
