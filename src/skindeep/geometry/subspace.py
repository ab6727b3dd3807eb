"""Low-rank safety subspaces and how they compare: eps-energy rank, principal angles, linear CKA."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import FloatArray, as_float_array, check_eps, check_min_rows
from skindeep.geometry.directions import _centered_svd, _pca_from_svd


@dataclass(frozen=True)
class Subspace:
    """One layer's safety subspace: the top-k PCA directions of the difference matrix D_l."""

    basis: FloatArray
    """[d, k] orthonormal columns, descending variance, sign-fixed as in `pca_subspace`."""
    k: int
    """Dimension kept (fixed, or chosen by the eps-energy rule)."""
    singular_values: FloatArray
    """[min(n, d)] full spectrum of the centered D_l, descending."""
    energy: float
    """Share of the total squared singular values captured by the k kept directions."""


@dataclass(frozen=True)
class SafetySubspace:
    """Per-layer safety subspaces of a pair, with the rule that chose their dimension."""

    layers: tuple[Subspace, ...]
    """One Subspace per layer, in layer order."""
    eps: float
    """Energy tolerance of the rank rule (unused when k was fixed)."""
    fixed_k: int | None
    """The fixed dimension, or None when k came from the eps-energy rule per layer."""

    @property
    def ks(self) -> np.ndarray:
        """[L] dimension kept at each layer."""
        return np.array([s.k for s in self.layers], dtype=np.int64)

    @property
    def bases(self) -> tuple[FloatArray, ...]:
        """Per-layer [d, k_l] bases."""
        return tuple(s.basis for s in self.layers)


def energy_rank(singular_values: ArrayLike, eps: float = 0.05) -> int:
    """Smallest k whose top-k squared singular values hold >= (1 - eps) of the total energy.

    Returns 0 for an all-zero spectrum. A relative slack of 1e-12 absorbs rounding at the boundary.
    """
    s = as_float_array(singular_values, "singular_values", 1)
    if np.any(s < 0):
        raise ValueError("singular_values must be non-negative")
    eps = check_eps(eps)
    energy = np.sort(s)[::-1] ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 0
    cumulative = np.cumsum(energy)
    target = (1.0 - eps) * total * (1.0 - 1e-12)
    return int(np.searchsorted(cumulative, target, side="left") + 1)


def safety_subspace(D: ArrayLike, k: int | None = None, eps: float = 0.05) -> SafetySubspace:
    """Per-layer top-k PCA subspace of D [n, L, d] (or [n, d], one layer); k=None: energy_rank."""
    x = as_float_array(D, "D", (2, 3))
    if x.ndim == 2:
        x = x[:, None, :]
    check_min_rows(x, "D")
    eps = check_eps(eps)
    n, n_layers, d = x.shape
    if k is not None and not 1 <= k <= min(n, d):
        raise ValueError(f"k must be None or in [1, min(n, d)] = [1, {min(n, d)}], got {k}")
    layers = []
    for layer in range(n_layers):
        mean, s, vt = _centered_svd(x[:, layer, :])
        k_l = k if k is not None else max(1, energy_rank(s, eps))
        total = float(np.sum(s**2))
        pca = _pca_from_svd(mean, s, vt, k_l, n)
        layers.append(
            Subspace(
                basis=pca.basis,
                k=k_l,
                singular_values=s,
                energy=float(np.sum(s[:k_l] ** 2) / total) if total > 0 else 0.0,
            )
        )
    return SafetySubspace(layers=tuple(layers), eps=eps, fixed_k=k)


def _orthonormal_columns(x: FloatArray, name: str) -> FloatArray:
    """Orthonormal basis of the column span of x [d, k]; raises if the columns are dependent."""
    if x.shape[1] > x.shape[0]:
        raise ValueError(f"{name} has more columns than rows {x.shape}: its columns are dependent")
    q, r = np.linalg.qr(x)
    diag = np.abs(np.diag(r))
    scale = float(np.linalg.norm(x, axis=0).max())
    if scale == 0.0 or diag.min() <= max(x.shape) * np.finfo(np.float64).eps * scale:
        raise ValueError(f"{name} must have linearly independent columns (shape {x.shape})")
    return q


def principal_angles(U: ArrayLike, V: ArrayLike) -> FloatArray:
    """Principal angles (radians, ascending) between span(U) and span(V); U [d, p], V [d, q].

    Columns span the subspaces (need not be orthonormal). Cosines come from svd(Qa^T Qb), sines
    from svd(Qb - Qa Qa^T Qb); each angle uses the better-conditioned one (Bjorck-Golub), so
    small angles are as accurate as large ones.
    """
    a = as_float_array(U, "U", 2)
    b = as_float_array(V, "V", 2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"U and V must have the same number of rows d, got {a.shape} vs {b.shape}")
    qa = _orthonormal_columns(a, "U")
    qb = _orthonormal_columns(b, "V")
    if qb.shape[1] > qa.shape[1]:
        qa, qb = qb, qa
    cross = qa.T @ qb
    cos = np.clip(np.linalg.svd(cross, compute_uv=False), -1.0, 1.0)  # descending
    sin = np.clip(np.linalg.svd(qb - qa @ cross, compute_uv=False)[::-1], 0.0, 1.0)  # ascending
    angles = np.where(cos**2 >= 0.5, np.arcsin(sin), np.arccos(cos))
    return np.sort(angles)


def linear_cka(X: ArrayLike, Y: ArrayLike) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n samples.

    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centered X [n, p], Y [n, q]; evaluated
    through n x n Gram matrices when n is smaller than the feature dimensions (same value).
    """
    x = as_float_array(X, "X", 2)
    y = as_float_array(Y, "Y", 2)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {x.shape} vs {y.shape}")
    check_min_rows(x, "X")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    n, p = x.shape
    q = y.shape[1]
    if n < max(p, q):
        kx, ky = x @ x.T, y @ y.T
        cross = float(np.sum(kx * ky))
        norm_x, norm_y = np.linalg.norm(kx), np.linalg.norm(ky)
    else:
        cross = float(np.linalg.norm(y.T @ x) ** 2)
        norm_x, norm_y = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
    if norm_x == 0.0 or norm_y == 0.0:
        raise ValueError("linear CKA is undefined for a constant representation")
    return float(cross / (norm_x * norm_y))
