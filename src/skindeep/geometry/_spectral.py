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

from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from skindeep.geometry._checks import FloatArray

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

    def right_vectors(self, k: int) -> FloatArray:
        """[k, d] the top-k right singular vectors as rows (unit norm, arbitrary signs)."""
        if self.vt is not None:
            return self.vt[:k]
        assert self.gram is not None
        _, evecs = _top_eigh(self.gram, k)
        if self.gram.shape[0] == self.centered.shape[1]:  # d x d Gram: eigenvectors are v_i
            return evecs.T
        rows = evecs.T @ self.centered  # u_i^T X = s_i v_i^T
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def centered_spectrum(x: FloatArray) -> CenteredSpectrum:
    """Decompose the centered [n, d] float64 matrix once (exact SVD or the Gram route)."""
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    if not uses_gram(n, d):
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        return CenteredSpectrum(mean=mean, singular_values=s, centered=xc, gram=None, vt=vt)
    gram = xc @ xc.T if n <= d else xc.T @ xc
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


def contrast_top_vector(
    target: FloatArray, background: FloatArray, alpha: float
) -> tuple[float, FloatArray] | None:
    """Top eigenpair of cov(target) - alpha * cov(background) by Lanczos, or None.

    Matrix-free: each step costs four [n, d] products, never a d x d matrix. Returns None when
    the top eigenvalue is not clearly positive: then it may belong to the common null space,
    which the exact row-span solver excludes, so the caller must use that solver instead.
    """
    tc = (target - target.mean(axis=0)) / np.sqrt(target.shape[0] - 1)
    bc = (background - background.mean(axis=0)) / np.sqrt(background.shape[0] - 1)
    d = tc.shape[1]

    def matvec(v: FloatArray) -> FloatArray:
        v = np.ravel(v)
        return tc.T @ (tc @ v) - alpha * (bc.T @ (bc @ v))

    op = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    evals, evecs = eigsh(op, k=1, which="LA", tol=0.0, v0=np.ones(d))
    scale = float(np.sum(tc**2) + alpha * np.sum(bc**2))
    if evals[0] <= 1e-10 * scale:
        return None
    return float(evals[0]), evecs[:, 0]
