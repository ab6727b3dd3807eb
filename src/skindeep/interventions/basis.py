"""Subspace bases for interventions: orthonormalisation, random null bases and layer bands.

A basis is a [d, k] matrix whose columns span the directions to remove (a single direction may
be a [d] vector). Everything here is float64 and model-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

_RANK_TOL = 1e-10


def orthonormal_basis(basis: ArrayLike | torch.Tensor, d: int | None = None) -> torch.Tensor:
    """The [d, k] float64 CPU tensor of orthonormal columns (reduced QR) spanning `basis`.

    Accepts a [d] vector or a [d, k] matrix (numpy or torch, any float dtype); raises a
    ValueError if the width is not `d`, a value is not finite, or the columns are dependent.
    """
    if isinstance(basis, torch.Tensor):
        mat = basis.detach().to("cpu", torch.float64)
    else:
        mat = torch.as_tensor(np.asarray(basis, dtype=np.float64))
    if mat.ndim == 1:
        mat = mat[:, None]
    if mat.ndim != 2 or mat.shape[0] == 0 or mat.shape[1] == 0:
        raise ValueError(f"basis must be a non-empty [d] vector or [d, k] matrix, got {mat.shape}")
    if d is not None and mat.shape[0] != d:
        raise ValueError(f"basis has {mat.shape[0]} rows but the residual stream has width {d}")
    if mat.shape[1] > mat.shape[0]:
        raise ValueError(f"basis has {mat.shape[1]} columns, more than its width {mat.shape[0]}")
    if not torch.isfinite(mat).all():
        raise ValueError("basis contains NaN or infinite values")
    q, r = torch.linalg.qr(mat, mode="reduced")
    diag = r.diagonal().abs()
    if diag.min() <= _RANK_TOL * max(float(diag.max()), 1e-300):
        raise ValueError(f"basis columns are linearly dependent (or zero): rank < {mat.shape[1]}")
    return q * torch.sign(r.diagonal())  # keep each column's orientation (positive diag(R))


def random_orthonormal(d: int, k: int, seed: int) -> FloatArray:
    """A random [d, k] orthonormal basis (QR of a seeded Gaussian), the null control for ablation.

    Signs are fixed so that diag(R) > 0, which makes the draw uniform (Haar) and deterministic.
    """
    if not 1 <= k <= d:
        raise ValueError(f"need 1 <= k <= d for a random basis, got d={d}, k={k}")
    gauss = np.random.default_rng(seed).standard_normal((d, k))
    q, r = np.linalg.qr(gauss)
    return q * np.sign(np.diag(r))


def random_nulls(d: int, k: int, n_draws: int = 3, seed: int = 0) -> list[FloatArray]:
    """`n_draws` independent random [d, k] orthonormal bases (the SPEC asks for at least 3)."""
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    children = np.random.SeedSequence(seed).spawn(n_draws)
    return [random_orthonormal(d, k, int(child.generate_state(1)[0])) for child in children]


@dataclass(frozen=True)
class Bands:
    """The narrow and wide ablation bands of the effective-rank audit (0-based layer indices)."""

    narrow: list[int]
    """5 layers spread over [0.45L, 0.70L]."""
    wide: list[int]
    """8 layers spread over [0.30L, 0.85L]."""


def spread_layers(num_layers: int, count: int, start: float, stop: float) -> list[int]:
    """`count` evenly spaced layers over [start*L, stop*L], rounded half up, deduped and sorted.

    Positions are computed exactly (fractions, no float error at .5) as
    start*L + i*(stop-start)*L/(count-1), rounded half up (floor(x + 1/2)), clipped to
    [0, L-1]; small L can therefore give fewer than `count` layers.
    """
    if num_layers < 1 or count < 1:
        raise ValueError(f"need num_layers >= 1 and count >= 1, got {num_layers}, {count}")
    lo = Fraction(str(start)) * num_layers
    hi = Fraction(str(stop)) * num_layers
    step = (hi - lo) / (count - 1) if count > 1 else Fraction(0)
    picked = {math.floor(lo + i * step + Fraction(1, 2)) for i in range(count)}
    return sorted({min(max(p, 0), num_layers - 1) for p in picked})


def bands(num_layers: int) -> Bands:
    """SPEC's narrow (5 over [0.45L, 0.70L]) and wide (8 over [0.30L, 0.85L]) layer bands."""
    return Bands(
        narrow=spread_layers(num_layers, 5, 0.45, 0.70),
        wide=spread_layers(num_layers, 8, 0.30, 0.85),
    )
