"""Linear CKA (Kornblith et al. 2019): how similar two representations of the same samples are.

`cka_from_grams` takes the n x n Gram matrices when a caller already has them (the fused audit
pass computes each layer's aligned and base Gram matrices once for CKA, the layer statistics and
the cPCA preconditioner).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import FloatArray, as_float_array, check_min_rows


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
        return cka_from_grams(x @ x.T, y @ y.T)
    cross = float(np.linalg.norm(y.T @ x) ** 2)
    return _cka_ratio(cross, float(np.linalg.norm(x.T @ x)), float(np.linalg.norm(y.T @ y)))


def cka_from_grams(kx: FloatArray, ky: FloatArray) -> float:
    """Linear CKA from the n x n Gram matrices of the column-centered X and Y (`linear_cka`'s
    route when n is below the feature dimensions): <Kx, Ky>_F / (||Kx||_F ||Ky||_F)."""
    if kx.shape != ky.shape or kx.ndim != 2 or kx.shape[0] != kx.shape[1]:
        raise ValueError(f"expected two n x n Gram matrices, got {kx.shape} and {ky.shape}")
    cross = float(np.sum(kx * ky))
    return _cka_ratio(cross, float(np.linalg.norm(kx)), float(np.linalg.norm(ky)))


def _cka_ratio(cross: float, norm_x: float, norm_y: float) -> float:
    """cross / (norm_x norm_y), raising for a constant representation (a zero norm)."""
    if norm_x == 0.0 or norm_y == 0.0:
        raise ValueError("linear CKA is undefined for a constant representation")
    return float(cross / (norm_x * norm_y))
