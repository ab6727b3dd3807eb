"""The audit's fused per-layer pass: every measure of one layer from one shared PairLayer.

Per layer, the aligned and base n x n Gram matrices are computed once and feed linear CKA, the
layer statistics' distance matrix and the cPCA preconditioner; D_l feeds the subspace, the code
GFS and the relative change; the Arditi direction feeds both GFS variants and the in-sample
Arditi effect. Each float64 copy is dropped as soon as the layer's last measure that needs it
is done, and the whole layer before the next one is taken. Pure numerics: arrays in, numbers
out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from skindeep.geometry import (
    BoolArray,
    GFSLayer,
    LabelledDesign,
    LayerRow,
    PairLayer,
    Subspace,
    arditi_direction,
    cka_from_grams,
    cohens_d,
    gfs_layer,
    layer_subspace,
    linear_cka,
    map_layers,
)
from skindeep.scores.config import AuditConfig


@dataclass(frozen=True)
class LayerMeasures:
    """Everything `pair_geometry` measures at one layer, before the across-layer steps."""

    subspace: Subspace
    """The safety subspace of D_l."""
    code: GFSLayer
    """Share of the code-variant GFS."""
    paper: GFSLayer
    """Share of the paper-variant GFS."""
    cka: float
    """Linear CKA of the aligned vs base rows."""
    relative_change: float
    """||D_l||_F / ||H_base,l||_F (0 where the base layer is all zero)."""
    stats: LayerRow | None
    """The layer tests; None where the tested rows are all equal (no test is defined)."""
    arditi_d: float
    """|Cohen's d| on the in-sample Arditi direction."""
    arditi_d_heldout: float
    """The same fitted on the train split and scored on the test split (NaN if too few)."""


@dataclass(frozen=True)
class PassInputs:
    """What every layer of the pass shares: the stacks, labels, split and per-layer verdicts."""

    aligned: np.ndarray
    """[n, L, d] aligned activations (any float dtype; one layer at a time goes to float64)."""
    base: np.ndarray
    """[n, L, d] base activations, same prompts."""
    harmful: BoolArray
    """[n] True for harmful prompts."""
    empty: BoolArray
    """[L] layers where D_l has no energy (`pair_empty_layers`)."""
    alpha: float
    """cPCA alpha of the paper variant."""
    train: np.ndarray
    """Held-out split of the Arditi effect: train rows."""
    test: np.ndarray
    """Test rows."""
    design: LabelledDesign
    """The layer tests' shared design."""


def measure_layers(inputs: PassInputs, config: AuditConfig) -> list[LayerMeasures]:
    """`measure_layer` at every layer, spread over the BLAS threads (one layer per worker)."""
    return map_layers(lambda i: measure_layer(inputs, config, i), inputs.aligned.shape[1])


def measure_layer(inputs: PassInputs, config: AuditConfig, i: int) -> LayerMeasures:
    """Every per-layer measure of layer i, each Gram matrix computed at most once."""
    layer = PairLayer(inputs.aligned[:, i], inputs.base[:, i], inputs.harmful)
    empty = bool(inputs.empty[i])
    on_difference = config.stats_on == "difference"
    diff = layer.difference  # first D_l alone: the subspace step is the largest
    share = (lambda: layer.gram("difference")) if on_difference else None
    subspace = layer_subspace(diff, config.k, config.eps, empty, share)
    code = gfs_layer(layer, "code", empty=empty, pc1=None if empty else subspace.basis[:, 0])
    norm = float(np.linalg.norm(layer.base))
    relative_change = float(np.linalg.norm(diff)) / (norm if norm > 0 else 1.0)
    stats = _tests(layer, inputs.design, "difference") if on_difference else None
    del diff
    layer.forget("difference", "gram:difference")

    if layer.n < layer.d:  # linear_cka's n x n route, on the shared Gram matrices
        cka = cka_from_grams(layer.gram("aligned"), layer.gram("base"))
    else:
        cka = linear_cka(layer.aligned, layer.base)
    if not on_difference:
        stats = _tests(layer, inputs.design, "aligned")
    layer.forget("gram:aligned")
    paper = gfs_layer(layer, "paper", inputs.alpha, empty)
    layer.forget("gram:base", "base")
    arditi_d, heldout = _arditi_effects(layer, inputs.train, inputs.test)
    return LayerMeasures(subspace, code, paper, cka, relative_change, stats, arditi_d, heldout)


def _tests(
    layer: PairLayer, design: LabelledDesign, kind: Literal["aligned", "difference"]
) -> LayerRow | None:
    """The layer tests on the aligned or difference rows; None when those rows are all equal."""
    z = layer.aligned if kind == "aligned" else layer.difference
    if not np.any(z != z[:1]):
        return None
    return design.layer_row(z, layer.gram(kind))


def _arditi_effects(layer: PairLayer, train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """|d| on the Arditi direction: in-sample, and fitted on train, scored on test (NaN when
    the test split has fewer than 2 prompts of a class)."""
    h, harmful = layer.aligned, layer.harmful
    a = layer.arditi
    in_sample = abs(cohens_d(h[harmful] @ a, h[~harmful] @ a))
    if min(harmful[test].sum(), (~harmful[test]).sum()) < 2:
        return in_sample, float("nan")
    tr, te = h[train], h[test]
    a_tr = arditi_direction(tr[harmful[train]], tr[~harmful[train]])
    proj = te @ a_tr
    return in_sample, abs(cohens_d(proj[harmful[test]], proj[~harmful[test]]))
