"""Input validation shared by the geometry modules: shapes, finiteness, labels, in one place."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_CHECK_BLOCK = 1 << 24
"""Elements checked for finiteness at a time."""


def as_finite_array(x: ArrayLike, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Validate rank, emptiness and finiteness, keeping a floating dtype (no full float64 copy).

    For large [n, L, d] stacks: callers convert one layer at a time to float64.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        want = " or ".join(f"{k}-D" for k in allowed)
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    rows_per_block = max(1, _CHECK_BLOCK // max(1, arr.size // arr.shape[0]))
    bad = sum(  # in blocks of rows: no [n, L, d] boolean mask of a paper-scale stack
        int(np.count_nonzero(~np.isfinite(arr[i : i + rows_per_block])))
        for i in range(0, arr.shape[0], rows_per_block)
    )
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def as_float_array(x: ArrayLike, name: str, ndim: int | tuple[int, ...]) -> FloatArray:
    """Return `x` as a finite float64 array of the given rank, or raise a ValueError naming it."""
    return np.asarray(as_finite_array(x, name, ndim), dtype=np.float64)


def check_eps(eps: float) -> float:
    """Validate an energy tolerance eps in [0, 1)."""
    eps = float(eps)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    return eps


def check_binary_labels(
    labels: ArrayLike, n: int, name: str = "is_harmful", min_per_class: int = 2
) -> BoolArray:
    """Return a boolean mask of length n with at least `min_per_class` True and False entries."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        uniq = np.unique(arr)
        if not np.all(np.isin(uniq, [0, 1])):
            raise ValueError(f"{name} must be boolean or 0/1, got values {uniq[:5]}")
        arr = arr.astype(bool)
    n_pos = int(arr.sum())
    n_neg = n - n_pos
    if min(n_pos, n_neg) < min_per_class:
        raise ValueError(
            f"{name} needs at least {min_per_class} samples per class, "
            f"got {n_pos} positive and {n_neg} negative"
        )
    return arr


def check_min_rows(x: FloatArray, name: str, minimum: int = 2) -> None:
    """Raise unless `x` has at least `minimum` samples along its first axis."""
    if x.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} samples, got {x.shape[0]}")


def check_same_shape(a: FloatArray, b: FloatArray, name_a: str, name_b: str) -> None:
    """Raise unless two paired arrays have identical shapes."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} vs {b.shape}"
        )


def check_same_features(a: FloatArray, b: FloatArray, name_a: str, name_b: str) -> None:
    """Raise unless two sample sets share every trailing (feature/layer) dimension."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"{name_a} and {name_b} must agree on all but the sample axis, "
            f"got {a.shape} vs {b.shape}"
        )


def unit(v: FloatArray, name: str = "vector") -> FloatArray:
    """Return v / ||v||, raising if v is (numerically) zero."""
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError(f"{name} has zero norm; its direction is undefined")
    return v / norm
