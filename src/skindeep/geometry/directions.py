"""Directions and small subspaces in activation space: Arditi, PCA, contrastive PCA, effect size.

Conventions for the whole geometry package: samples are rows ([n, d], or [n, L, d] per layer);
a subspace basis is a [d, k] matrix with orthonormal columns (as in scipy.linalg and in the
ablation h - U U^T h); a single direction is a unit [d] vector. Everything accumulates in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from skindeep.geometry._checks import (
    FloatArray,
    as_float_array,
    check_binary_labels,
    check_min_rows,
    check_same_features,
    check_same_shape,
    unit,
)
from skindeep.geometry._probe import fit_score, stratified_split
from skindeep.geometry._spectral import (
    CenteredSpectrum,
    GramSource,
    centered_spectrum,
    contrast_top_vector,
    top_right_vector,
    uses_gram,
)

CPCA_ALPHAS: tuple[float, ...] = (1.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
"""The alpha grid of the Skin-Deep paper for contrastive PCA."""


@dataclass(frozen=True)
class PCAResult:
    """Top-k principal directions of a sample matrix (centered), with the full spectrum."""

    basis: FloatArray
    """[d, k] orthonormal columns, descending variance, sign-fixed (see `pca_subspace`)."""
    explained_variance: FloatArray
    """[k] sample variance (ddof=1) of the data along each basis column."""
    singular_values: FloatArray
    """[min(n, d)] all singular values of the centered data, descending."""
    mean: FloatArray
    """[d] the column mean that was subtracted."""

    @property
    def k(self) -> int:
        """Number of directions kept."""
        return int(self.basis.shape[1])

    @property
    def explained_variance_ratio(self) -> FloatArray:
        """[k] share of the total variance along each kept direction (0 when data is constant)."""
        total = float(np.sum(self.singular_values**2))
        if total == 0.0:
            return np.zeros(self.k)
        return self.singular_values[: self.k] ** 2 / total


@dataclass(frozen=True)
class CPCAResult:
    """Top-k eigenvectors of cov(target) - alpha * cov(background), restricted to the data span."""

    basis: FloatArray
    """[d, k] orthonormal columns, descending eigenvalue, sign-fixed."""
    eigenvalues: FloatArray
    """[k] eigenvalues of cov(target) - alpha * cov(background) for the kept columns."""
    spectrum: FloatArray
    """[r] every eigenvalue inside the span of the centered data (r = its rank), descending."""
    alpha: float
    """The contrast weight used."""

    @property
    def k(self) -> int:
        """Number of directions kept."""
        return int(self.basis.shape[1])


@dataclass(frozen=True)
class AlphaSelection:
    """The cPCA alpha chosen by held-out linear-probe accuracy, with the whole curve."""

    alpha: float
    """The alpha with the best held-out accuracy (the first one, in grid order, on ties)."""
    alphas: FloatArray
    """[m] the grid that was tried, in the order given."""
    accuracies: FloatArray
    """[m] held-out probe accuracy on the 1-D projection, one per alpha."""


def abs_cosine(u: ArrayLike, v: ArrayLike) -> float:
    """|cos(u, v)|: alignment between two directions, ignoring their arbitrary signs."""
    a = as_float_array(u, "u", 1)
    b = as_float_array(v, "v", 1)
    if a.shape != b.shape:
        raise ValueError(f"u and v must have the same length, got {a.shape} vs {b.shape}")
    return float(min(1.0, abs(unit(a, "u") @ unit(b, "v"))))


def arditi_direction(h_harmful: ArrayLike, h_harmless: ArrayLike) -> FloatArray:
    """Unit mean(harmful) - mean(harmless) (Arditi 2024), per layer: [n, L, d] -> [L, d]."""
    pos = as_float_array(h_harmful, "h_harmful", (2, 3))
    neg = as_float_array(h_harmless, "h_harmless", (2, 3))
    if pos.ndim != neg.ndim:
        raise ValueError(f"h_harmful and h_harmless differ in rank: {pos.shape} vs {neg.shape}")
    check_same_features(pos, neg, "h_harmful", "h_harmless")
    diff = pos.mean(axis=0) - neg.mean(axis=0)
    if diff.ndim == 1:
        return unit(diff, "mean(h_harmful) - mean(h_harmless)")
    return np.stack(
        [unit(row, f"mean difference at layer {i}") for i, row in enumerate(diff)], axis=0
    )


def _fix_signs(basis: FloatArray, reference: FloatArray | None) -> FloatArray:
    """Flip columns so each has a positive dot with `reference`, else a positive largest entry."""
    out = basis.copy()
    ref_norm = 0.0 if reference is None else float(np.linalg.norm(reference))
    for j in range(out.shape[1]):
        col = out[:, j]
        proj = float(col @ reference) if reference is not None else 0.0
        if abs(proj) > 1e-8 * ref_norm and ref_norm > 0.0:
            sign = np.sign(proj)
        else:
            sign = np.sign(col[np.argmax(np.abs(col))]) or 1.0
        out[:, j] = sign * col
    return out


def _pca_from_spectrum(spec: CenteredSpectrum, k: int, n: int) -> PCAResult:
    """Assemble a PCAResult from a centered spectrum (so callers decompose only once)."""
    s = spec.singular_values
    basis = _fix_signs(spec.right_vectors(k).T, spec.mean)
    return PCAResult(
        basis=basis,
        explained_variance=s[:k] ** 2 / (n - 1),
        singular_values=s,
        mean=spec.mean,
    )


def pca_subspace(D: ArrayLike, k: int) -> PCAResult:
    """Top-k principal directions of D [n, d] (centered, via thin SVD).

    Signs are fixed so that the uncentered mean of D (the average shift) projects positively on
    each direction; when that projection is zero, the largest-magnitude entry is made positive.
    """
    x = as_float_array(D, "D", 2)
    check_min_rows(x, "D")
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k must be in [1, min(n, d)] = [1, {min(n, d)}], got {k}")
    return _pca_from_spectrum(centered_spectrum(x), k, n)


def pca_direction(D: ArrayLike) -> FloatArray:
    """First principal component of D [n, d] as a unit vector (the released-code GFS direction).

    Equal to `pca_subspace(D, 1).basis[:, 0]`, without computing the rest of the spectrum.
    """
    x = as_float_array(D, "D", 2)
    check_min_rows(x, "D")
    mean, v = top_right_vector(x)
    return _fix_signs(v[:, None], mean)[:, 0]


@dataclass(frozen=True)
class _CPCAFactor:
    """Alpha-independent part of cPCA: C(alpha) = Q (R diag(j(alpha)) R^T) Q^T."""

    q: FloatArray  # [d, r] orthonormal basis of the row span of the stacked centered data
    r: FloatArray  # [r, m] rows of the pivoted R factor, columns back in the original order
    n_target: int
    reference: FloatArray  # mean(target) - mean(background), for the sign convention


def _cpca_factor(a: FloatArray, b: FloatArray) -> _CPCAFactor:
    """Rank-revealing QR of the stacked, scaled, centered rows of both sets (done once per pair)."""
    ac = (a - a.mean(axis=0)) / np.sqrt(a.shape[0] - 1)
    bc = (b - b.mean(axis=0)) / np.sqrt(b.shape[0] - 1)
    stacked_t = np.vstack([ac, bc]).T  # [d, m]
    q, r, perm = scipy.linalg.qr(stacked_t, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    tol = max(stacked_t.shape) * np.finfo(np.float64).eps * (diag[0] if diag.size else 0.0)
    rank = int(np.sum(diag > tol))
    r_orig = np.empty_like(r[:rank])
    r_orig[:, perm] = r[:rank]  # undo the column pivoting: stacked_t = q[:, :rank] @ r_orig
    return _CPCAFactor(
        q=q[:, :rank],
        r=r_orig,
        n_target=a.shape[0],
        reference=a.mean(axis=0) - b.mean(axis=0),
    )


def _cpca_solve(factor: _CPCAFactor, alpha: float, k: int) -> CPCAResult:
    """Small r x r symmetric eigenproblem for one alpha, lifted back to d dimensions."""
    rank, m = factor.r.shape
    if k > rank:
        raise ValueError(f"k={k} exceeds the rank {rank} of the centered data")
    weights = np.full(m, -alpha)
    weights[: factor.n_target] = 1.0
    small = (factor.r * weights) @ factor.r.T
    small = 0.5 * (small + small.T)
    evals, evecs = np.linalg.eigh(small)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    basis = _fix_signs(factor.q @ evecs[:, :k], factor.reference)
    return CPCAResult(basis=basis, eigenvalues=evals[:k], spectrum=evals, alpha=float(alpha))


def _check_cpca_inputs(
    h_target: ArrayLike, h_background: ArrayLike, alpha: float
) -> tuple[FloatArray, FloatArray, float]:
    """Validate the two sample sets and alpha for contrastive PCA."""
    a = as_float_array(h_target, "h_target", 2)
    b = as_float_array(h_background, "h_background", 2)
    check_min_rows(a, "h_target")
    check_min_rows(b, "h_background")
    check_same_features(a, b, "h_target", "h_background")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0.0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    return a, b, alpha


def cpca_subspace(
    h_target: ArrayLike, h_background: ArrayLike, alpha: float, k: int = 1
) -> CPCAResult:
    """Top-k eigenvectors of cov(target) - alpha * cov(background) (ddof=1), computed exactly.

    The matrix has rank <= n_target + n_background, so it is solved in the span of the stacked
    centered rows (pivoted QR, then an r x r eigenproblem), never as a d x d problem. Directions
    in which neither set varies (the common null space, eigenvalue 0) are excluded: they carry no
    data. Signs: positive dot with mean(target) - mean(background).
    """
    a, b, alpha = _check_cpca_inputs(h_target, h_background, alpha)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return _cpca_solve(_cpca_factor(a, b), alpha, k)


def cpca_direction(
    h_target: ArrayLike,
    h_background: ArrayLike,
    alpha: float,
    background_gram: GramSource | None = None,
) -> FloatArray:
    """Top cPCA direction (the paper-variant GFS direction), equal to `cpca_subspace(...)` k=1.

    At paper scale (both sets >= `GRAM_MIN_SIZE` wide) the top eigenvector is found matrix-free
    by preconditioned Davidson; when its eigenvalue is not clearly positive (it could lie in the
    common null space) or on small problems, the exact row-span solver runs instead.
    `background_gram`: the n_b x n_b Gram matrix of the centered background rows, when the
    caller shares it (used by the preconditioner only, so only at paper scale).
    """
    a, b, alpha = _check_cpca_inputs(h_target, h_background, alpha)
    if uses_gram(a.shape[0] + b.shape[0], a.shape[1]):
        found = contrast_top_vector(a, b, alpha, background_gram)
        if found is not None:
            reference = a.mean(axis=0) - b.mean(axis=0)
            return _fix_signs(found[1][:, None], reference)[:, 0]
    return _cpca_solve(_cpca_factor(a, b), alpha, 1).basis[:, 0]


def select_cpca_alpha(
    h_target: ArrayLike,
    h_background: ArrayLike,
    labels: ArrayLike,
    alphas: Sequence[float] = CPCA_ALPHAS,
    test_size: float = 0.3,
    seed: int = 0,
) -> AlphaSelection:
    """Choose the cPCA alpha whose top direction best separates `labels` on held-out prompts.

    Paired inputs (row i of both sets is prompt i, labels[i] its class). One stratified split
    (seeded); for each alpha the cPCA direction is fitted on the train rows only, the target
    rows are projected onto it, and a logistic regression on that 1-D feature is scored on the
    test rows.
    """
    a, b, _ = _check_cpca_inputs(h_target, h_background, 0.0)
    check_same_shape(a, b, "h_target", "h_background")
    y = check_binary_labels(labels, a.shape[0], "labels")
    grid = np.asarray([float(x) for x in alphas], dtype=np.float64)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"alphas must be a non-empty list of finite numbers >= 0, got {alphas}")
    train, test = stratified_split(y, test_size, seed)
    check_min_rows(a[train], "the train split")
    factor = _cpca_factor(a[train], b[train])
    accuracies = np.empty(grid.size)
    for i, alpha in enumerate(grid):
        v = _cpca_solve(factor, float(alpha), 1).basis[:, 0]
        accuracies[i] = fit_score(a[train] @ v, y[train], a[test] @ v, y[test])
    best = int(np.argmax(accuracies))
    return AlphaSelection(alpha=float(grid[best]), alphas=grid, accuracies=accuracies)


def cohens_d(x_pos: ArrayLike, x_neg: ArrayLike) -> float:
    """Cohen's d = (mean_pos - mean_neg) / pooled SD (ddof=1): a scale-free effect size.

    Returns 0.0 when both groups are constant and equal, and +-inf when constant but different.
    """
    p = as_float_array(x_pos, "x_pos", 1)
    q = as_float_array(x_neg, "x_neg", 1)
    check_min_rows(p, "x_pos")
    check_min_rows(q, "x_neg")
    n1, n2 = p.size, q.size
    pooled_var = ((n1 - 1) * p.var(ddof=1) + (n2 - 1) * q.var(ddof=1)) / (n1 + n2 - 2)
    diff = float(p.mean() - q.mean())
    if pooled_var == 0.0:
        return 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    return diff / float(np.sqrt(pooled_var))
