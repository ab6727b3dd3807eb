"""Spectra of centered sample matrices, fast at paper scale (n ~ 2000 prompts, d ~ 4096).

A thin LAPACK SVD of a 2000 x 4096 matrix spends most of its time in memory-bound
bidiagonalisation; the n x n Gram matrix (one BLAS-3 product) carries the same spectrum
(s_i^2 = its eigenvalues) and the right singular vectors follow from its eigenvectors. Below
`GRAM_MIN_SIZE` the exact SVD is cheap and kept, so small problems (every organism) get
bit-for-bit the results of the plain SVD; above it, singular values agree with the SVD to
about sqrt(machine eps) * s_max in absolute terms (energies, s^2, to eps * s_max^2), which is
what every energy rule and ratio here uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import eigsh

from skindeep.geometry._checks import FloatArray

GramSource = Callable[[], FloatArray]
"""Gives a Gram matrix a caller already has (or computes once for several uses), on demand."""

GRAM_MIN_SIZE = 1024
"""min(n, d) from which the Gram route replaces the LAPACK SVD."""

_LANCZOS_MAX_SHARE = 0.1
"""Top-k eigenvectors by Lanczos when k <= this share of the Gram size, else a full eigh."""


def uses_gram(n: int, d: int) -> bool:
    """Whether a centered [n, d] matrix is decomposed through its Gram matrix."""
    return min(n, d) >= GRAM_MIN_SIZE


def _top_eigh(gram: FloatArray, k: int) -> tuple[FloatArray, FloatArray]:
    """Top-k eigenpairs (descending) of a symmetric PSD matrix; deterministic start vector."""
    size = gram.shape[0]
    if k <= _LANCZOS_MAX_SHARE * size:
        evals, evecs = eigsh(gram, k=k, which="LA", tol=0.0, v0=np.ones(size))
    else:
        evals, evecs = np.linalg.eigh(gram)
        evals, evecs = evals[-k:], evecs[:, -k:]
    order = np.argsort(evals)[::-1]
    return evals[order], evecs[:, order]


@dataclass(frozen=True)
class CenteredSpectrum:
    """Column mean, singular values and (on demand) right singular vectors of x - mean(x)."""

    mean: FloatArray
    """[d] the column mean that was subtracted."""
    singular_values: FloatArray
    """[min(n, d)] singular values of the centered matrix, descending."""
    centered: FloatArray
    """[n, d] the centered matrix."""
    gram: FloatArray | None
    """Its Gram matrix (n x n when n <= d, else d x d); None on the exact-SVD route."""
    vt: FloatArray | None
    """[min(n, d), d] right singular vectors (rows) on the exact-SVD route; None otherwise."""
    gram_vectors: FloatArray | None = None
    """All eigenvectors of the Gram matrix (columns, descending) when they were computed with
    its spectrum; None when `right_vectors` finds the top ones on demand."""

    def right_vectors(self, k: int) -> FloatArray:
        """[k, d] the top-k right singular vectors as rows (unit norm, arbitrary signs)."""
        if self.vt is not None:
            return self.vt[:k]
        assert self.gram is not None
        if self.gram_vectors is not None:
            evecs = self.gram_vectors[:, :k]
        else:
            _, evecs = _top_eigh(self.gram, k)
        if self.gram.shape[0] == self.centered.shape[1]:  # d x d Gram: eigenvectors are v_i
            return evecs.T
        rows = evecs.T @ self.centered  # u_i^T X = s_i v_i^T
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows


def _many_vectors(gram: FloatArray, k: int | None, eps: float | None) -> bool:
    """Whether more than the Lanczos share of eigenvectors will be wanted (k given, or the
    eps-energy rank guessed): then one full eigh beats eigvalsh followed by another eigh.

    The guess is a seeded randomized range finder: the energy it captures in m directions is at
    most the top-m energy (Ky Fan), so "short of 1 - eps" can only err towards the full eigh.
    Either way the numbers are the same; only the time differs.
    """
    size = gram.shape[0]
    m = int(_LANCZOS_MAX_SHARE * size)
    if k is not None or eps is None:
        return k is not None and k > m
    total = float(np.trace(gram))
    if m < 1 or total <= 0.0:
        return m < 1
    sketch = gram @ (gram @ np.random.default_rng(0).standard_normal((size, m)))
    q = np.linalg.qr(sketch)[0]
    return float(np.sum(q * (gram @ q))) < (1.0 - eps) * total


def centered_spectrum(
    x: FloatArray,
    k: int | None = None,
    eps: float | None = None,
    row_gram: GramSource | None = None,
) -> CenteredSpectrum:
    """Decompose the centered [n, d] float64 matrix once (exact SVD or the Gram route).

    `k` (the number of right vectors the caller will ask for) or `eps` (its energy rule) only
    pick the faster LAPACK route for the eigenvectors to come. `row_gram`: gives the n x n
    Gram matrix of x - mean(x) when the caller shares it; called only on the Gram route with
    n <= d, where it replaces the product computed here.
    """
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    if not uses_gram(n, d):
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        return CenteredSpectrum(mean=mean, singular_values=s, centered=xc, gram=None, vt=vt)
    shared = row_gram is not None and n <= d
    gram = row_gram() if shared else (xc @ xc.T if n <= d else xc.T @ xc)
    if _many_vectors(gram, k, eps):
        evals, evecs = np.linalg.eigh(gram)
        s = np.sqrt(np.clip(evals[::-1], 0.0, None))
        return CenteredSpectrum(
            mean=mean, singular_values=s, centered=xc, gram=gram, vt=None,
            gram_vectors=evecs[:, ::-1],
        )  # fmt: skip
    evals = np.linalg.eigvalsh(gram)[::-1]
    s = np.sqrt(np.clip(evals, 0.0, None))
    return CenteredSpectrum(mean=mean, singular_values=s, centered=xc, gram=gram, vt=None)


def top_right_vector(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Column mean and first right singular vector of x - mean(x), without the full spectrum."""
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    if not uses_gram(n, d):
        return mean, np.linalg.svd(xc, full_matrices=False)[2][0]
    gram = xc @ xc.T if n <= d else xc.T @ xc
    _, evecs = _top_eigh(gram, 1)
    if n > d:
        return mean, evecs[:, 0]
    row = evecs[:, 0] @ xc
    return mean, row / np.linalg.norm(row)


_DAVIDSON_TOL = 1e-14
"""Converged when ||C u - theta u|| <= this times trace(cov target) + alpha trace(cov bg)."""

_DAVIDSON_MAX_STEPS = 400
"""Matrix-vector products before giving up (the caller then runs the exact solver)."""

_DAVIDSON_BASIS = 40
"""Search-space size at which it restarts from its best few Ritz vectors."""


class _BaseShiftInverse:
    """Applies (sigma I + alpha cov(background))^{-1} exactly, through an n_b x n_b Cholesky.

    Woodbury: (sigma I + alpha B^T B)^{-1} = (I - B^T (sigma/alpha I + B B^T)^{-1} B) / sigma,
    with B the scaled, centered background [n_b, d]. This ignores the target's covariance, so it
    only preconditions: it removes the wide negative spread alpha * cov(background) puts into
    the spectrum of the contrast matrix, which is what makes plain Lanczos need hundreds of
    steps at alpha = 100.
    """

    def __init__(
        self, bc: FloatArray, gram: FloatArray, alpha: float, divisor: float = 1.0
    ) -> None:
        """`gram / divisor` is B B^T (a shared unscaled Gram matrix is divided per shift, so no
        scaled copy of it is held)."""
        self.bc, self.gram, self.alpha, self.divisor = bc, gram, alpha, divisor
        self.sigma = 0.0
        self.factor: tuple[FloatArray, bool] | None = None

    def set_shift(self, sigma: float) -> None:
        """Refactor for a new shift sigma > 0."""
        self.sigma = sigma
        if self.alpha > 0.0:  # B B^T + (sigma / alpha) I, factored in place (one n_b^2 array)
            shifted = self.gram / self.divisor
            shifted.flat[:: shifted.shape[0] + 1] += sigma / self.alpha
            self.factor = scipy.linalg.cho_factor(
                shifted.T, lower=True, overwrite_a=True, check_finite=False
            )  # shifted.T: the same symmetric matrix, in the Fortran order LAPACK works in

    def __call__(self, r: FloatArray) -> FloatArray:
        if self.factor is None:
            return r / self.sigma
        inner = scipy.linalg.cho_solve(self.factor, self.bc @ r, check_finite=False)
        return (r - self.bc.T @ inner) / self.sigma


def contrast_top_vector(
    target: FloatArray,
    background: FloatArray,
    alpha: float,
    background_gram: GramSource | None = None,
) -> tuple[float, FloatArray] | None:
    """Top eigenpair of cov(target) - alpha * cov(background) by preconditioned Davidson, or None.

    Matrix-free: a step costs four [n, d] products for the contrast matrix and two for the
    preconditioner (`_BaseShiftInverse`), never a d x d matrix; the Rayleigh-Ritz step with an
    orthonormal search space makes the converged pair exact to rounding whatever the
    preconditioner. Returns None when it does not converge, or when the top eigenvalue is not
    clearly positive (it may then belong to the common null space, which the exact row-span
    solver excludes): the caller must then use that solver. `background_gram`: gives the
    n_b x n_b Gram matrix of the centered (unscaled) background rows when the caller shares it.
    """
    tc = target - target.mean(axis=0)
    tc /= np.sqrt(target.shape[0] - 1)
    bc = background - background.mean(axis=0)
    bc /= np.sqrt(background.shape[0] - 1)
    d = tc.shape[1]
    trace_target = float(np.vdot(tc, tc))  # sums of squares without an [n, d] temporary
    scale = trace_target + alpha * float(np.vdot(bc, bc))
    if trace_target == 0.0:  # the contrast matrix is negative semi-definite
        return None

    def contrast(v: FloatArray) -> FloatArray:
        return tc.T @ (tc @ v) - alpha * (bc.T @ (bc @ v))

    if alpha == 0.0:  # the preconditioner is a plain scaling: no Gram matrix
        precondition = _BaseShiftInverse(bc, np.zeros((0, 0)), alpha)
    elif background_gram is None:
        precondition = _BaseShiftInverse(bc, bc @ bc.T, alpha)
    else:  # the caller's Gram of the unscaled rows: B B^T = gram / (n_b - 1)
        precondition = _BaseShiftInverse(bc, background_gram(), alpha, background.shape[0] - 1)
    precondition.set_shift(trace_target / max(1, min(tc.shape[0] - 1, d)))  # mean variance
    basis = np.empty((d, 0))
    images = np.empty((d, 0))
    new = np.ones(d)
    theta = 0.0
    u = new
    for _ in range(_DAVIDSON_MAX_STEPS):
        for _ in range(2):  # twice is enough (Kahan): an orthonormal basis to rounding
            new = new - basis @ (basis.T @ new)
        norm = float(np.linalg.norm(new))
        if norm == 0.0 or not np.isfinite(norm):
            return None
        new = new / norm
        basis = np.column_stack([basis, new])
        images = np.column_stack([images, contrast(new)])
        small = basis.T @ images
        evals, evecs = np.linalg.eigh(0.5 * (small + small.T))
        theta, s = float(evals[-1]), evecs[:, -1]
        u = basis @ s
        residual = images @ s - theta * u
        if np.linalg.norm(residual) <= _DAVIDSON_TOL * scale:
            break
        if basis.shape[1] >= _DAVIDSON_BASIS:  # thick restart on the top Ritz vectors
            keep = evecs[:, -8:]
            basis, images = basis @ keep, images @ keep
        if theta > 4.0 * precondition.sigma:
            precondition.set_shift(theta)
        new = precondition(residual)
    else:
        return None
    if theta <= 1e-10 * scale:
        return None
    return theta, u / np.linalg.norm(u)
