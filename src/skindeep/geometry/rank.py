"""The effective-rank audit (Nakamura 2026): rank_eps of the alignment modification matrix M.

M is d x n: one column per prompt, h_aligned(x_i) - h_base(x_i). Four variants separate the
chat-template shift from the alignment shift; the top left singular vector is compared with the
Arditi refusal direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import (
    FloatArray,
    as_float_array,
    check_binary_labels,
    check_eps,
    check_same_shape,
)
from skindeep.geometry.directions import abs_cosine
from skindeep.geometry.subspace import energy_rank


@dataclass(frozen=True)
class RankResult:
    """eps-energy rank of one modification matrix M [d, n] and its leading left singular vectors."""

    rank_eps: int
    """min k with sum_{i<=k} s_i^2 >= (1 - eps) sum_i s_i^2."""
    rho: float
    """rank_eps / d."""
    rho_min: float
    """rank_eps / min(d, n)."""
    singular_values: FloatArray
    """[min(d, n)] singular values of M (column-mean-centered if `centered`), descending."""
    left_singular_vectors: FloatArray
    """[d, k] leading left singular vectors, k = min(max(rank_eps, n_vectors), min(d, n))."""
    eps: float
    """Energy tolerance."""
    centered: bool
    """Whether the mean column was subtracted before the SVD."""
    d: int
    """Hidden size (rows of M)."""
    n: int
    """Number of prompts (columns of M)."""


@dataclass(frozen=True)
class RankProfile:
    """Per-layer RankResults of a stack of modification matrices [L, d, n]."""

    layers: tuple[RankResult, ...]
    """One result per layer, in layer order."""

    @property
    def ranks(self) -> np.ndarray:
        """[L] rank_eps per layer."""
        return np.array([r.rank_eps for r in self.layers], dtype=np.int64)

    @property
    def rho(self) -> FloatArray:
        """[L] rank_eps / d per layer."""
        return np.array([r.rho for r in self.layers])

    @property
    def rho_min(self) -> FloatArray:
        """[L] rank_eps / min(d, n) per layer."""
        return np.array([r.rho_min for r in self.layers])

    @property
    def mean_rho(self) -> float:
        """rho averaged over layers (the paper's per-model summary)."""
        return float(self.rho.mean())

    @property
    def mean_rho_min(self) -> float:
        """rho_min averaged over layers."""
        return float(self.rho_min.mean())


@dataclass(frozen=True)
class ModificationVariants:
    """The four modification matrices of the audit, per layer, columns = prompts: [L, d, n]."""

    naive: FloatArray | None
    """h_aligned(chat) - h_base(raw); None when h_base_raw was not given."""
    template: FloatArray
    """h_aligned(chat) - h_base(chat): the headline, template-controlled variant."""
    aligned: FloatArray | None
    """h_aligned(chat) - h_aligned(raw); None when h_aligned_raw was not given."""
    did: FloatArray
    """template[harmful columns] - mean of template[harmless columns]: [L, d, n_harmful]."""
    safety_only: bool
    """True when naive/template/aligned hold only the harmful (safety) columns."""


@dataclass(frozen=True)
class SpectralGapResult:
    """The spectral-gap lower bound kappa_lb of limit (c) and its structural ceiling 2/(eps r)."""

    kappa_lb: float
    """s_r(S)^2 / (eps * (||M_h||_F^2 + ||M_u||_F^2)) with S = M_h - M_u."""
    ceiling: float
    """2 / (eps * r); kappa_lb can never exceed it."""
    holds: bool
    """Whether the spectral-gap hypothesis kappa_lb >= 1 holds."""
    r: int
    """The rank index used."""
    s_r: float
    """The r-th singular value of S."""


def _svd_of_columns(m: FloatArray, centered: bool) -> tuple[FloatArray, FloatArray]:
    """Left singular vectors and singular values of M [d, n], optionally column-mean-centered."""
    if centered:
        m = m - m.mean(axis=1, keepdims=True)
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    return u, s


def effective_rank(
    M: ArrayLike, eps: float = 0.05, centered: bool = False, n_vectors: int = 50
) -> RankResult:
    """rank_eps, rho and leading left singular vectors of one modification matrix M [d, n].

    Singular values at the rounding level of M (below max(d, n) * machine eps * max|M|) count as
    zero, so a matrix that is zero up to rounding has rank 0.
    """
    m = as_float_array(M, "M", 2)
    eps = check_eps(eps)
    d, n = m.shape
    if centered and n < 2:
        raise ValueError("centered effective rank needs at least 2 columns (prompts)")
    if n_vectors < 1:
        raise ValueError(f"n_vectors must be >= 1, got {n_vectors}")
    u, s = _svd_of_columns(m, centered)
    # singular values at rounding level of M itself (e.g. a constant matrix, centered) count as 0
    tol = max(d, n) * np.finfo(np.float64).eps * float(np.abs(m).max())
    rank = energy_rank(np.where(s > tol, s, 0.0), eps)
    keep = min(max(rank, n_vectors), s.size)
    return RankResult(
        rank_eps=rank,
        rho=rank / d,
        rho_min=rank / min(d, n),
        singular_values=s,
        left_singular_vectors=u[:, :keep],
        eps=eps,
        centered=centered,
        d=d,
        n=n,
    )


def effective_rank_by_layer(
    M: ArrayLike, eps: float = 0.05, centered: bool = False, n_vectors: int = 50
) -> RankProfile:
    """effective_rank at every layer of a stack M [L, d, n]."""
    m = as_float_array(M, "M", 3)
    return RankProfile(layers=tuple(effective_rank(layer, eps, centered, n_vectors) for layer in m))


def modification_variants(
    h_aligned_chat: ArrayLike,
    h_base_raw: ArrayLike | None,
    h_base_chat: ArrayLike,
    h_aligned_raw: ArrayLike | None,
    is_harmful: ArrayLike,
    safety_only: bool = True,
) -> ModificationVariants:
    """Build M_naive, M_template, M_aligned and M_DiD from hidden states h_* [n, L, d].

    All inputs are paired (row i is prompt i in every array). With safety_only (the paper's
    M_Ds) naive/template/aligned keep only the harmful columns; DiD always uses the harmless
    columns as its control.
    """
    chat = as_float_array(h_aligned_chat, "h_aligned_chat", 3)
    base_chat = as_float_array(h_base_chat, "h_base_chat", 3)
    check_same_shape(chat, base_chat, "h_aligned_chat", "h_base_chat")
    harmful = check_binary_labels(is_harmful, chat.shape[0], min_per_class=1)
    cols = harmful if safety_only else np.ones_like(harmful)

    def to_columns(x: FloatArray) -> FloatArray:
        """[n, L, d] -> [L, d, n]."""
        return np.ascontiguousarray(x.transpose(1, 2, 0))

    def optional(other: ArrayLike | None, name: str, minuend: FloatArray) -> FloatArray | None:
        """minuend - other on the kept columns, or None when `other` is not given."""
        if other is None:
            return None
        arr = as_float_array(other, name, 3)
        check_same_shape(chat, arr, "h_aligned_chat", name)
        return to_columns((minuend - arr)[cols])

    template_all = chat - base_chat
    control = template_all[~harmful].mean(axis=0)  # [L, d]
    return ModificationVariants(
        naive=optional(h_base_raw, "h_base_raw", chat),
        template=to_columns(template_all[cols]),
        aligned=optional(h_aligned_raw, "h_aligned_raw", chat),
        did=to_columns(template_all[harmful] - control),
        safety_only=safety_only,
    )


def direction_recovery(M: ArrayLike, a: ArrayLike, centered: bool = False) -> float:
    """|cos(u_1, a)|: how well the top left singular vector of M [d, n] recovers direction a [d]."""
    m = as_float_array(M, "M", 2)
    vec = as_float_array(a, "a", 1)
    if vec.shape[0] != m.shape[0]:
        raise ValueError(f"a must have length d={m.shape[0]} (rows of M), got {vec.shape[0]}")
    u, s = _svd_of_columns(m, centered)
    if s[0] == 0.0:
        raise ValueError("M is zero; its top singular vector is undefined")
    return abs_cosine(u[:, 0], vec)


def spectral_gap_bound(
    M_h: ArrayLike, M_u: ArrayLike, r: int | None = None, eps: float = 0.05
) -> SpectralGapResult:
    """kappa_lb = s_r(M_h - M_u)^2 / (eps (||M_h||_F^2 + ||M_u||_F^2)) for limit (c) of the audit.

    M_h, M_u [d, n] are the safety and reference modification matrices on paired columns; r
    defaults to rank_eps(M_h). Since s_r^2 <= ||S||_F^2 / r <= 2 (||M_h||^2 + ||M_u||^2) / r,
    kappa_lb <= 2 / (eps r): the hypothesis kappa_lb >= 1 fails whenever r > 2 / eps.
    """
    mh = as_float_array(M_h, "M_h", 2)
    mu = as_float_array(M_u, "M_u", 2)
    check_same_shape(mh, mu, "M_h", "M_u")
    eps = check_eps(eps)
    if eps == 0.0:
        raise ValueError("eps must be > 0 for the spectral-gap bound")
    s = np.linalg.svd(mh - mu, compute_uv=False)
    if r is None:
        r = max(1, energy_rank(np.linalg.svd(mh, compute_uv=False), eps))
    if not 1 <= r <= s.size:
        raise ValueError(f"r must be in [1, min(d, n)] = [1, {s.size}], got {r}")
    denom = eps * (float(np.sum(mh**2)) + float(np.sum(mu**2)))
    if denom == 0.0:
        raise ValueError("M_h and M_u are both zero; kappa_lb is undefined")
    kappa = float(s[r - 1] ** 2 / denom)
    return SpectralGapResult(
        kappa_lb=kappa, ceiling=2.0 / (eps * r), holds=kappa >= 1.0, r=int(r), s_r=float(s[r - 1])
    )
