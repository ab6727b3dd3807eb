"""Harmful-vs-harmless tests at every layer of a stack: PERMANOVA, MMD, probe, BH across layers.

Every layer shares one design (row order, labels, held-out split, permutation seed), so a
layer's numbers equal those of the single-layer calls. A caller that already has a layer's
n x n Gram matrix (the fused audit pass) hands it over instead of a second product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from skindeep.geometry._checks import (
    BoolArray,
    FloatArray,
    as_finite_array,
    check_min_rows,
    check_same_features,
)
from skindeep.geometry._parallel import map_layers
from skindeep.geometry._probe import fit_score, stratified_split
from skindeep.geometry.stats import (
    LayerStatistics,
    PermanovaDistance,
    _check_n_perm,
    _mmd_core,
    _permanova_core,
    _sq_distances,
    benjamini_hochberg,
)

LayerRow = tuple[float, float, float, float, float, float]
"""One layer's pseudo-F, PERMANOVA p, MMD^2, MMD p, gamma and probe accuracy."""


@dataclass(frozen=True)
class LabelledDesign:
    """What the tests of every layer share: harmful-first order, labels, split, permutations."""

    keep: NDArray[np.int64] | None
    """Row order that puts the harmful rows first (each class in its given order); None when
    the rows already are in that order."""
    m: int
    """Number of harmful rows."""
    labels: BoolArray
    """[n] True for the first m (harmful) rows of the reordered stack."""
    train: NDArray[np.int64]
    """Held-out split of the probe (indices into the reordered stack)."""
    test: NDArray[np.int64]
    """The probe's test rows (indices into the reordered stack)."""
    n_perm: int
    """Permutations per test."""
    q: float
    """FDR level of the BH correction across layers."""
    seed: int
    """Seed of the split and the permutations."""
    permanova_distance: PermanovaDistance
    """PERMANOVA dissimilarity ('euclidean' or 'sqeuclidean')."""

    @classmethod
    def of(
        cls,
        is_harmful: ArrayLike,
        n_perm: int = 1000,
        q: float = 0.05,
        test_size: float = 0.3,
        seed: int = 0,
        permanova_distance: PermanovaDistance = "euclidean",
    ) -> LabelledDesign:
        """Validate the options and fix the design for rows labelled by `is_harmful`."""
        if permanova_distance not in ("euclidean", "sqeuclidean"):
            raise ValueError(
                "permanova_distance must be 'euclidean' or 'sqeuclidean', "
                f"got {permanova_distance!r}"
            )
        n_perm = _check_n_perm(n_perm)
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q}")
        harmful = np.asarray(is_harmful, dtype=bool)
        order = np.concatenate([np.flatnonzero(harmful), np.flatnonzero(~harmful)])
        m = int(harmful.sum())
        check_min_rows(order[:m], "h_harmful")
        check_min_rows(order[m:], "h_harmless")
        labels = np.zeros(order.size, dtype=bool)
        labels[:m] = True
        train, test = stratified_split(labels, test_size, seed)
        keep = order if np.any(order != np.arange(order.size)) else None
        return cls(keep, m, labels, train, test, n_perm, float(q), seed, permanova_distance)

    def layer_row(self, z: FloatArray, gram: FloatArray | None = None) -> LayerRow:
        """The tests of one layer's float64 rows z [n, d] (in the given order, not reordered).

        `gram`: the n x n Gram matrix of z - mean(z) in that order, when the caller has it; the
        distance matrix then costs no product (the same numbers, to rounding).
        """
        if self.keep is None:
            sq = _sq_distances(z, gram)
            x_train, x_test = z[self.train], z[self.test]
        else:
            keep = self.keep
            shared = None if gram is None else gram[np.ix_(keep, keep)]
            sq = _sq_distances(z[keep] if shared is None else z, shared)
            x_train, x_test = z[keep[self.train]], z[keep[self.test]]
        codes = (~self.labels).astype(np.int64)  # 0 = harmful, 1 = harmless
        perma = _permanova_core(sq, codes, self.n_perm, self.seed, self.permanova_distance)
        mmd = _mmd_core(sq, self.m, None, self.n_perm, self.seed)
        del sq
        acc = fit_score(x_train, self.labels[self.train], x_test, self.labels[self.test])
        return perma.pseudo_f, perma.p_value, mmd.mmd2, mmd.p_value, mmd.gamma, acc

    def statistics(self, rows: Sequence[LayerRow]) -> LayerStatistics:
        """Collect per-layer rows (in layer order) and BH-adjust each test across them."""
        columns = np.array(rows, dtype=np.float64).reshape(len(rows), 6)
        f, pf, mmd, pm, gamma, acc = columns.T
        bh_f = benjamini_hochberg(pf, self.q)
        bh_m = benjamini_hochberg(pm, self.q)
        return LayerStatistics(
            pseudo_f=f,
            permanova_p=pf,
            permanova_p_adjusted=bh_f.adjusted,
            permanova_reject=bh_f.reject,
            mmd2=mmd,
            mmd_p=pm,
            mmd_p_adjusted=bh_m.adjusted,
            mmd_reject=bh_m.reject,
            gamma=gamma,
            probe_accuracy=acc,
            n_perm=self.n_perm,
            q=self.q,
        )


def layer_statistics(
    h_harmful: ArrayLike,
    h_harmless: ArrayLike,
    n_perm: int = 1000,
    q: float = 0.05,
    test_size: float = 0.3,
    seed: int = 0,
    permanova_distance: PermanovaDistance = "euclidean",
) -> LayerStatistics:
    """PERMANOVA, MMD (with BH-FDR across layers) and probe accuracy at every layer of [n, L, d].

    Every layer uses the same seed, so a layer's numbers equal those of the single-layer calls.
    """
    pos = as_finite_array(h_harmful, "h_harmful", 3)
    neg = as_finite_array(h_harmless, "h_harmless", 3)
    check_min_rows(pos, "h_harmful")
    check_min_rows(neg, "h_harmless")
    check_same_features(pos, neg, "h_harmful", "h_harmless")
    m = pos.shape[0]

    def stacked(layer: int) -> FloatArray:
        return np.vstack([pos[:, layer, :], neg[:, layer, :]]).astype(np.float64)

    return labelled_layer_statistics(
        stacked, pos.shape[1], np.arange(m + neg.shape[0]) < m, n_perm=n_perm, q=q,
        test_size=test_size, seed=seed, permanova_distance=permanova_distance,
    )  # fmt: skip


def labelled_layer_statistics(
    layer_rows: Callable[[int], FloatArray],
    n_layers: int,
    is_harmful: ArrayLike,
    n_perm: int = 1000,
    q: float = 0.05,
    test_size: float = 0.3,
    seed: int = 0,
    permanova_distance: PermanovaDistance = "euclidean",
) -> LayerStatistics:
    """`layer_statistics` of labelled rows: `layer_rows(l)` gives layer l as float64 [n, d].

    The rows are taken harmful first (each class in its given order), exactly as
    `layer_statistics(h[is_harmful], h[~is_harmful])` stacks them, so the numbers are the same;
    but only one layer is ever held, never a copy of the [n, L, d] stack.
    """
    design = LabelledDesign.of(is_harmful, n_perm, q, test_size, seed, permanova_distance)
    return design.statistics(map_layers(lambda i: design.layer_row(layer_rows(i)), n_layers))
