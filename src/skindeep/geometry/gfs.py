"""The Geometric Fragility Score of Skin-Deep: GFS = sum_l w_l * d_l * (1 - c_l), both variants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import (
    BoolArray,
    FloatArray,
    as_finite_array,
    check_binary_labels,
    check_same_shape,
)
from skindeep.geometry._parallel import map_layers
from skindeep.geometry.directions import (
    abs_cosine,
    cohens_d,
    cpca_direction,
    pca_direction,
)
from skindeep.geometry.pair_layer import PairLayer
from skindeep.geometry.subspace import SafetySubspace, centered_energy, no_energy_layers

Variant = Literal["code", "paper"]
VARIANTS: tuple[str, ...] = ("code", "paper")


@dataclass(frozen=True)
class GFSResult:
    """Per-layer profiles and the scalar GFS for one aligned/base pair."""

    gfs: float
    """Sum over layers of `contribution`; higher means more fragile."""
    d: FloatArray
    """[L] |Cohen's d| (harmful vs harmless) of the projection onto v_l; 0 at empty layers."""
    c: FloatArray
    """[L] |cos(v_l, a_l)|, alignment of v_l with the refusal direction; NaN at empty layers."""
    w: FloatArray
    """[L] layer weights, summing to 1."""
    contribution: FloatArray
    """[L] w * d * (1 - c); exactly 0 at empty layers."""
    directions: FloatArray
    """[L, d] unit difference directions v_l (PC1 of D_l, or the top cPCA eigenvector); NaN rows
    at empty layers."""
    arditi: FloatArray
    """[L, d] unit Arditi directions a_l of the aligned model."""
    peak_layer: int
    """argmax_l d_l (0-based index into the given layers)."""
    variant: str
    """'code' (released-code PCA) or 'paper' (contrastive PCA)."""
    alpha: float | None
    """The cPCA alpha for the paper variant, None for the code variant."""
    empty: BoolArray
    """[L] True where D_l carries no energy (`no_energy_layers`): alignment left the layer
    untouched (or shifted every prompt alike), so there is no difference direction."""

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return int(self.d.shape[0])


def layer_weights(n_layers: int, variant: Variant = "code") -> FloatArray:
    """GFS layer weights summing to 1: code linspace(0.5, 1.5, L), paper proportional to l/L."""
    if int(n_layers) != n_layers or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers}")
    n_layers = int(n_layers)
    if variant == "code":
        raw = np.linspace(0.5, 1.5, n_layers)
    elif variant == "paper":
        raw = np.arange(1, n_layers + 1, dtype=np.float64) / n_layers
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return raw / raw.sum()


def geometric_fragility(
    h_aligned: ArrayLike,
    h_base: ArrayLike,
    is_harmful: ArrayLike,
    variant: Variant = "code",
    alpha: float = 100.0,
    subspace: SafetySubspace | None = None,
) -> GFSResult:
    """GFS of an aligned/base pair from paired hidden states h_* [n, L, d] at the same prompts.

    Code variant: v_l = PC1 of D_l = H_aligned,l - H_base,l (all prompts, centered) and d_l from
    projecting D_l. Paper variant: v_l = top eigenvector of cov(H_aligned,l) - alpha *
    cov(H_base,l) and d_l from projecting H_aligned,l. In both, c_l = |cos(v_l, a_l)| with a_l the
    Arditi direction of the aligned model.

    Layers where the centered D_l has no energy (both covariances equal, so neither variant has a
    direction) get v_l = NaN, c_l = NaN, d_l = 0 and contribute exactly 0.

    `subspace`: the `pair_subspace` of the same arrays, when the caller has it: its empty-layer
    mask and (code variant) its first direction, which is PC1 of D_l, are then reused instead of
    recomputed (the same numbers, to rounding).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    aligned = as_finite_array(h_aligned, "h_aligned", 3)
    base = as_finite_array(h_base, "h_base", 3)
    check_same_shape(aligned, base, "h_aligned", "h_base")
    n, n_layers, _ = aligned.shape
    harmful = check_binary_labels(is_harmful, n)
    if variant == "paper" and (not np.isfinite(alpha) or alpha < 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")

    def energy(layer: int) -> float:  # one layer in float64 at a time
        return centered_energy(
            np.asarray(aligned[:, layer, :], dtype=np.float64) - base[:, layer, :]
        )

    if subspace is not None:
        if len(subspace.layers) != n_layers or subspace.bases[0].shape[0] != aligned.shape[2]:
            raise ValueError("subspace must come from pair_subspace of the same [n, L, d] arrays")
        empty = subspace.empty
    else:
        empty = no_energy_layers(map_layers(energy, n_layers))

    def one_layer(layer: int) -> GFSLayer:
        pair = PairLayer(aligned[:, layer, :], base[:, layer, :], harmful)
        pc1 = None if subspace is None or empty[layer] else subspace.layers[layer].basis[:, 0]
        return gfs_layer(pair, variant, alpha, bool(empty[layer]), pc1)

    return gfs_from_layers(map_layers(one_layer, n_layers), empty, variant, alpha)


@dataclass(frozen=True)
class GFSLayer:
    """One layer's share of a GFS, before the layer weights are known."""

    arditi: FloatArray
    """[d] unit Arditi direction a_l of the aligned model."""
    direction: FloatArray | None
    """[d] unit difference direction v_l; None at an empty layer."""
    d: float
    """|Cohen's d| of the projection onto v_l (0 at an empty layer)."""


def gfs_layer(
    layer: PairLayer,
    variant: Variant,
    alpha: float = 100.0,
    empty: bool = False,
    pc1: FloatArray | None = None,
) -> GFSLayer:
    """a_l, v_l and |d_l| of one layer (see `geometric_fragility`); `pc1`: PC1 of D_l when the
    caller has it (code variant). The paper variant's preconditioner takes the layer's base Gram
    matrix, so it is shared with whatever else of the layer uses it."""
    a_dir = layer.arditi
    if empty:
        return GFSLayer(a_dir, None, 0.0)
    if variant == "code":
        diff = layer.difference
        v = pca_direction(diff) if pc1 is None else pc1
        proj = diff @ v
    else:
        v = cpca_direction(layer.aligned, layer.base, alpha, lambda: layer.gram("base"))
        proj = layer.aligned @ v
    harmful = layer.harmful
    return GFSLayer(a_dir, v, abs(cohens_d(proj[harmful], proj[~harmful])))


def gfs_from_layers(
    layers: Sequence[GFSLayer], empty: BoolArray, variant: Variant, alpha: float = 100.0
) -> GFSResult:
    """Weight and sum the per-layer shares into a GFSResult (`empty`: `no_energy_layers`)."""
    n_layers = len(layers)
    directions = np.full((n_layers, layers[0].arditi.shape[0]), np.nan)
    arditi = np.empty_like(directions)
    d = np.zeros(n_layers)
    c = np.full(n_layers, np.nan)
    for i, row in enumerate(layers):
        arditi[i] = row.arditi
        if row.direction is not None:
            directions[i], d[i] = row.direction, row.d
            c[i] = abs_cosine(row.direction, row.arditi)

    w = layer_weights(n_layers, variant)
    contribution = np.zeros(n_layers)
    contribution[~empty] = w[~empty] * d[~empty] * (1.0 - c[~empty])
    return GFSResult(
        gfs=float(contribution.sum()),
        d=d,
        c=c,
        w=w,
        contribution=contribution,
        directions=directions,
        arditi=arditi,
        peak_layer=int(np.argmax(d)),
        variant=variant,
        alpha=float(alpha) if variant == "paper" else None,
        empty=empty,
    )
