"""Low-rank safety subspaces and how they compare: eps-energy rank, principal angles.

A layer whose difference matrix D_l carries no energy (alignment left it untouched, or moved every
prompt by the same vector) has an empty subspace (k = 0, a [d, 0] basis): it has no direction, and
principal angles involving it are undefined (NaN here, never 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import ArrayLike, NDArray

from skindeep.geometry._checks import (
    BoolArray,
    FloatArray,
    as_finite_array,
    as_float_array,
    check_eps,
    check_min_rows,
    check_same_shape,
)
from skindeep.geometry._parallel import map_layers
from skindeep.geometry._spectral import GramSource, centered_spectrum
from skindeep.geometry.directions import _pca_from_spectrum

IntArray = NDArray[np.int64]

ZERO_ENERGY_RTOL = 1e-12
"""D_l has no energy when ||D_l - mean||_F^2 <= this times the largest layer's (1e-6 in norm)."""


@dataclass(frozen=True)
class Subspace:
    """One layer's safety subspace: the top-k PCA directions of the difference matrix D_l."""

    basis: FloatArray
    """[d, k] orthonormal columns, descending variance, sign-fixed as in `pca_subspace`."""
    k: int
    """Dimension kept (fixed, or chosen by the eps-energy rule); 0 when D_l has no energy."""
    singular_values: FloatArray
    """[min(n, d)] full spectrum of the centered D_l, descending."""
    energy: float
    """Share of the total squared singular values captured by the k kept directions."""

    @property
    def is_empty(self) -> bool:
        """True when D_l carries no energy, so the subspace has no direction (k = 0)."""
        return self.k == 0


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
        """[L] dimension kept at each layer (0 where the layer is empty)."""
        return np.array([s.k for s in self.layers], dtype=np.int64)

    @property
    def empty(self) -> BoolArray:
        """[L] True where D_l carries no energy and the subspace is empty."""
        return np.array([s.is_empty for s in self.layers], dtype=bool)

    @property
    def bases(self) -> tuple[FloatArray, ...]:
        """Per-layer [d, k_l] bases ([d, 0] at empty layers)."""
        return tuple(s.basis for s in self.layers)


def centered_energy(x: FloatArray) -> float:
    """||x - mean(x)||_F^2 of a sample matrix [n, d]: the energy the empty-layer rule compares."""
    return float(np.sum((x - x.mean(axis=0)) ** 2))


def no_energy_layers(energies: ArrayLike, rtol: float = ZERO_ENERGY_RTOL) -> BoolArray:
    """[L] True where a layer's energy is <= rtol times the largest layer's (all True if all 0)."""
    e = as_float_array(energies, "energies", 1)
    if np.any(e < 0):
        raise ValueError("energies must be non-negative")
    if not 0.0 <= rtol < 1.0:
        raise ValueError(f"rtol must be in [0, 1), got {rtol}")
    return e <= rtol * float(e.max())


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


def layer_subspace(
    D_l: FloatArray, k: int | None, eps: float, empty: bool, row_gram: GramSource | None = None
) -> Subspace:
    """One layer's subspace from its float64 difference matrix D_l [n, d] (see safety_subspace).

    `empty` is the layer's verdict from `no_energy_layers` over all layers of the pair;
    `row_gram` gives the n x n Gram matrix of the centered D_l when the caller shares it.
    """
    n, d = D_l.shape
    k_hint, eps_hint = None if empty else k, None if empty or k is not None else eps
    spec = centered_spectrum(D_l, k_hint, eps_hint, row_gram)
    s = spec.singular_values
    if empty:
        return Subspace(basis=np.zeros((d, 0)), k=0, singular_values=s, energy=0.0)
    k_l = k if k is not None else max(1, energy_rank(s, eps))
    pca = _pca_from_spectrum(spec, k_l, n)
    return Subspace(
        basis=pca.basis, k=k_l, singular_values=s, energy=float(np.sum(s[:k_l] ** 2) / np.sum(s**2))
    )


def safety_subspace(D: ArrayLike, k: int | None = None, eps: float = 0.05) -> SafetySubspace:
    """Per-layer top-k PCA subspace of D [n, L, d] (or [n, d], one layer); k=None: energy_rank.

    Layers whose D_l has no energy (`no_energy_layers` over the given layers) get k = 0 and a
    [d, 0] basis, whatever k was asked for. One layer at a time is converted to float64, so a
    float32 stack costs no full float64 copy.
    """
    x = as_finite_array(D, "D", (2, 3))
    if x.ndim == 2:
        x = x[:, None, :]
    check_min_rows(x, "D")
    eps = check_eps(eps)
    n, n_layers, d = x.shape
    _check_k(k, n, d)

    def layer(i: int) -> FloatArray:
        return np.asarray(x[:, i, :], dtype=np.float64)

    return _per_layer(layer, n_layers, k, eps)


def pair_subspace(
    h_aligned: ArrayLike, h_base: ArrayLike, k: int | None = None, eps: float = 0.05
) -> SafetySubspace:
    """`safety_subspace` of D = h_aligned - h_base [n, L, d], one float64 layer at a time.

    The same result as `safety_subspace(h_aligned.astype(float64) - h_base)` without holding
    the whole float64 difference (at L = 32, n = 2000, d = 4096 that copy alone is 2 GiB).
    """
    a, b = _checked_pair(h_aligned, h_base)
    eps = check_eps(eps)
    n, n_layers, d = a.shape
    _check_k(k, n, d)
    return _per_layer(lambda i: _pair_difference(a, b, i), n_layers, k, eps)


def pair_empty_layers(h_aligned: ArrayLike, h_base: ArrayLike) -> BoolArray:
    """[L] `no_energy_layers` of D = h_aligned - h_base [n, L, d]: the layers `pair_subspace`
    leaves empty, found one float64 layer at a time (for callers that build subspaces layer by
    layer with `layer_subspace`)."""
    a, b = _checked_pair(h_aligned, h_base)
    n_layers = a.shape[1]
    return no_energy_layers(
        map_layers(lambda i: centered_energy(_pair_difference(a, b, i)), n_layers)
    )


def _checked_pair(h_aligned: ArrayLike, h_base: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Finite paired [n, L, d] stacks of the same shape with at least 2 rows (no copy)."""
    a = as_finite_array(h_aligned, "h_aligned", 3)
    b = as_finite_array(h_base, "h_base", 3)
    check_same_shape(a, b, "h_aligned", "h_base")
    check_min_rows(a, "h_aligned")
    return a, b


def _pair_difference(a: np.ndarray, b: np.ndarray, i: int) -> FloatArray:
    """D_l = a_l - b_l of layer i in float64."""
    return np.asarray(a[:, i, :], dtype=np.float64) - b[:, i, :]


def _check_k(k: int | None, n: int, d: int) -> None:
    """A fixed subspace dimension must fit the data: 1 <= k <= min(n, d)."""
    if k is not None and not 1 <= k <= min(n, d):
        raise ValueError(f"k must be None or in [1, min(n, d)] = [1, {min(n, d)}], got {k}")


def _per_layer(
    layer: Callable[[int], FloatArray], n_layers: int, k: int | None, eps: float
) -> SafetySubspace:
    """Energies of every layer first (for the empty mask), then one subspace per layer."""
    empty = no_energy_layers(map_layers(lambda i: centered_energy(layer(i)), n_layers))
    layers = tuple(map_layers(lambda i: layer_subspace(layer(i), k, eps, bool(empty[i])), n_layers))
    return SafetySubspace(layers=layers, eps=eps, fixed_k=k)


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


def _angles_between(qa: FloatArray, qb: FloatArray) -> FloatArray:
    """Principal angles (radians, ascending) between two orthonormal [d, p], [d, q] bases."""
    if qb.shape[1] > qa.shape[1]:
        qa, qb = qb, qa
    cross = qa.T @ qb
    cos = np.clip(np.linalg.svd(cross, compute_uv=False), -1.0, 1.0)  # descending
    small = cos**2 >= 0.5
    if not small.any():  # every angle above 45 degrees: the cosines are accurate, skip the sines
        return np.sort(np.arccos(cos))
    sin = np.clip(np.linalg.svd(qb - qa @ cross, compute_uv=False)[::-1], 0.0, 1.0)  # ascending
    angles = np.where(small, np.arcsin(sin), np.arccos(cos))
    return np.sort(angles)


def principal_angles(U: ArrayLike, V: ArrayLike) -> FloatArray:
    """Principal angles (radians, ascending) between span(U) and span(V); U [d, p], V [d, q].

    Columns span the subspaces (need not be orthonormal). Cosines come from svd(Qa^T Qb), sines
    from svd(Qb - Qa Qa^T Qb); each angle uses the better-conditioned one (Bjorck-Golub), so
    small angles are as accurate as large ones. An empty subspace (p or q = 0) raises: its
    angles are undefined.
    """
    a = as_float_array(U, "U", 2)
    b = as_float_array(V, "V", 2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"U and V must have the same number of rows d, got {a.shape} vs {b.shape}")
    return _angles_between(_orthonormal_columns(a, "U"), _orthonormal_columns(b, "V"))


def consecutive_angles(subspace: SafetySubspace) -> tuple[FloatArray | None, ...]:
    """Principal angles (radians, ascending) between layer l and l + 1; None if either is empty.

    The same angles as `principal_angles` on consecutive bases, without re-orthonormalising
    them: a SafetySubspace's bases are orthonormal by construction.
    """
    return tuple(
        None if u.shape[1] == 0 or v.shape[1] == 0 else _angles_between(u, v)
        for u, v in pairwise(subspace.bases)
    )


Bases = SafetySubspace | Sequence[ArrayLike]
"""Per-layer subspaces: a SafetySubspace, or one [d, k_l] column basis per layer (k_l may be 0)."""


def _layer_bases(x: Bases, name: str) -> tuple[list[FloatArray | None], int]:
    """Orthonormal [d, k_l] bases per layer (None where empty) and their common width d."""
    raw = [
        np.asarray(b, dtype=np.float64) for b in (x.bases if isinstance(x, SafetySubspace) else x)
    ]
    if not raw:
        raise ValueError(f"{name} has no layers")
    out: list[FloatArray | None] = []
    for i, arr in enumerate(raw):
        if arr.ndim != 2:
            raise ValueError(f"{name} layer {i}: a basis must be [d, k], got shape {arr.shape}")
        if arr.shape[0] != raw[0].shape[0]:
            raise ValueError(
                f"{name} mixes widths: layer 0 has d = {raw[0].shape[0]}, layer {i} has "
                f"d = {arr.shape[0]}"
            )
        where = f"{name} layer {i}"
        out.append(
            None
            if arr.shape[1] == 0
            else _orthonormal_columns(as_float_array(arr, where, 2), where)
        )
    return out, int(raw[0].shape[0])


def _summary(angles: FloatArray | None) -> tuple[float, float, float]:
    """Mean cosine, smallest and largest angle (degrees) of ascending radians; NaN if undefined."""
    if angles is None:
        return np.nan, np.nan, np.nan
    deg = np.degrees(angles)
    return float(np.mean(np.cos(angles))), float(deg[0]), float(deg[-1])


@dataclass(frozen=True)
class SubspaceComparison:
    """Principal angles between layer l of one per-layer subspace set and layer l of another."""

    angles_deg: tuple[FloatArray | None, ...]
    """Per layer, the min(k_a, k_b) principal angles in degrees, ascending; None where undefined."""
    mean_cos: FloatArray
    """[L] mean cosine of the angles (1: nested spans, 0: orthogonal); NaN: undefined."""
    ks_a: IntArray
    """[L] dimension of each layer's subspace in the first set (0: empty)."""
    ks_b: IntArray
    """[L] dimension of each layer's subspace in the second set (0: empty)."""

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return len(self.angles_deg)

    @property
    def defined(self) -> BoolArray:
        """[L] True where both subspaces are non-empty, so the angles exist."""
        return np.array([a is not None for a in self.angles_deg], dtype=bool)

    @property
    def min_angle_deg(self) -> FloatArray:
        """[L] smallest principal angle in degrees; NaN where undefined."""
        return np.array([np.nan if a is None else a[0] for a in self.angles_deg])

    @property
    def max_angle_deg(self) -> FloatArray:
        """[L] largest principal angle in degrees; NaN where undefined."""
        return np.array([np.nan if a is None else a[-1] for a in self.angles_deg])


@dataclass(frozen=True)
class SubspaceAngleMatrix:
    """All-pairs layer x layer principal-angle summaries between two subspace sets (or one)."""

    mean_cos: FloatArray
    """[L_a, L_b] mean cosine of the principal angles; NaN where either subspace is empty."""
    min_angle_deg: FloatArray
    """[L_a, L_b] smallest principal angle in degrees; NaN where undefined."""
    max_angle_deg: FloatArray
    """[L_a, L_b] largest principal angle in degrees; NaN where undefined."""


def compare_subspaces(a: Bases, b: Bases) -> SubspaceComparison:
    """Principal angles between layer l of `a` and layer l of `b` (same d and L, e.g. two models).

    Angles and mean cosines are undefined (None / NaN) where either layer's subspace is empty.
    """
    qa, da = _layer_bases(a, "a")
    qb, db = _layer_bases(b, "b")
    if da != db:
        raise ValueError(f"the subspaces live in different spaces: d = {da} vs d = {db}")
    if len(qa) != len(qb):
        raise ValueError(f"the subspace sets have different layer counts: {len(qa)} vs {len(qb)}")
    radians = [
        None if u is None or v is None else _angles_between(u, v)
        for u, v in zip(qa, qb, strict=True)
    ]
    ks_a, ks_b = (np.array([0 if q is None else q.shape[1] for q in qs]) for qs in (qa, qb))
    return SubspaceComparison(
        angles_deg=tuple(None if t is None else np.degrees(t) for t in radians),
        mean_cos=np.array([_summary(t)[0] for t in radians]),
        ks_a=ks_a.astype(np.int64),
        ks_b=ks_b.astype(np.int64),
    )


def subspace_angle_matrix(a: Bases, b: Bases | None = None) -> SubspaceAngleMatrix:
    """Every layer of `a` against every layer of `b`; b=None: `a` against itself (symmetric)."""
    qa, da = _layer_bases(a, "a")
    qb, db = (qa, da) if b is None else _layer_bases(b, "b")
    if da != db:
        raise ValueError(f"the subspaces live in different spaces: d = {da} vs d = {db}")
    out = np.full((3, len(qa), len(qb)), np.nan)
    for i, u in enumerate(qa):
        for j, v in enumerate(qb):
            if b is None and j < i:
                out[:, i, j] = out[:, j, i]
            else:
                out[:, i, j] = _summary(None if u is None or v is None else _angles_between(u, v))
    return SubspaceAngleMatrix(mean_cos=out[0], min_angle_deg=out[1], max_angle_deg=out[2])
