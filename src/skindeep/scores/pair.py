"""Pure numerical glue: every geometry measure of one aligned/base pair from [n, L, d] arrays.

Nothing here loads a model or touches files; `audit_pair` feeds it the stored activations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from skindeep.errors import ConfigError, PromptError
from skindeep.geometry import (
    BoolArray,
    FloatArray,
    GFSResult,
    LabelledDesign,
    LayerRow,
    LayerStatistics,
    SafetySubspace,
    consecutive_angles,
    gfs_from_layers,
    pair_empty_layers,
    select_cpca_alpha,
    stratified_split,
)
from skindeep.scores.config import AuditConfig
from skindeep.scores.pair_pass import PassInputs, measure_layers


@dataclasses.dataclass(frozen=True)
class AlphaChoice:
    """The cPCA alpha chosen by held-out probe accuracy, averaged over layers."""

    alpha: float
    """The grid value with the best mean accuracy; on ties the configured alpha when it is among
    the best (separable classes say nothing about alpha), else the first in grid order."""
    alphas: FloatArray
    """[m] the grid tried."""
    accuracies: FloatArray
    """[L, m] held-out accuracy of the 1-D cPCA projection, per layer and alpha; NaN rows at
    layers where D_l has no energy (no contrast to find, so they take no part in the choice)."""

    @property
    def mean_accuracy(self) -> FloatArray:
        """[m] accuracy averaged over the layers that were scored (NaN if none was)."""
        scored = self.accuracies[np.isfinite(self.accuracies).all(axis=1)]
        return scored.mean(axis=0) if scored.size else np.full(self.alphas.shape, np.nan)


@dataclasses.dataclass(frozen=True)
class PairGeometry:
    """Everything measured on one pair; per-layer arrays follow `layers`."""

    layers: tuple[int, ...]
    """Model layer index of each row of the per-layer arrays."""
    gfs: dict[str, GFSResult]
    """GFS of both variants, by name ('code', 'paper')."""
    alpha: float
    """The cPCA alpha of the paper variant (fixed or selected)."""
    alpha_choice: AlphaChoice | None
    """The selection curve when alpha was selected."""
    subspace: SafetySubspace
    """Per-layer top-k PCA subspace of D_l = H_aligned,l - H_base,l (empty where D_l = 0)."""
    angles: tuple[FloatArray | None, ...]
    """[L - 1] principal angles (radians) between the subspaces of consecutive layers; None where
    either subspace is empty (undefined, not 0)."""
    cka: FloatArray
    """[L] linear CKA of aligned vs base activations."""
    stats: LayerStatistics
    """PERMANOVA, MMD (BH-adjusted) and probe accuracy, harmful vs harmless."""
    stats_on: str
    """'aligned' activations or 'difference' D_l."""
    permanova_distance: str
    """PERMANOVA dissimilarity: 'euclidean' (squared Euclidean distances enter the pseudo-F
    sums: the classical trace F) or 'sqeuclidean' (their squares do)."""
    arditi_d: FloatArray
    """[L] |Cohen's d| of the aligned activations projected on the Arditi direction (in-sample)."""
    arditi_d_heldout: FloatArray
    """[L] the same with the direction fitted on the train split and scored on the test split."""
    relative_change: FloatArray
    """[L] ||D_l||_F / ||H_base,l||_F: how much alignment moved each layer (0: untouched)."""

    @property
    def empty(self) -> BoolArray:
        """[L] True where D_l carries no energy: no subspace, no direction, no GFS contribution."""
        return self.subspace.empty


def _check_inputs(
    aligned: np.ndarray, base: np.ndarray, harmful: np.ndarray, config: AuditConfig
) -> None:
    """User-facing checks that the geometry would otherwise report as bare ValueErrors."""
    if aligned.shape != base.shape or aligned.ndim != 3:
        raise ValueError(f"expected paired [n, L, d] arrays, got {aligned.shape} vs {base.shape}")
    n_pos, n_neg = int(harmful.sum()), int((~harmful).sum())
    if min(n_pos, n_neg) < 2:
        raise PromptError(f"need >= 2 prompts per class, got {n_pos} harmful, {n_neg} harmless")
    n, _, d = aligned.shape
    if config.k is not None and config.k > min(n, d):
        raise ConfigError(f"k={config.k} exceeds min(n prompts, hidden size) = {min(n, d)}")


def _choose_alpha(
    aligned: np.ndarray,
    base: np.ndarray,
    harmful: np.ndarray,
    config: AuditConfig,
    empty: np.ndarray,
) -> AlphaChoice:
    """Run the held-out alpha selection at every layer with energy; keep the best mean accuracy."""
    alphas = np.asarray(config.alphas, dtype=np.float64)
    accuracies = np.full((aligned.shape[1], alphas.size), np.nan)
    try:
        for layer in np.flatnonzero(~empty):
            accuracies[layer] = select_cpca_alpha(
                aligned[:, layer].astype(np.float64),
                base[:, layer].astype(np.float64),
                harmful,
                alphas=config.alphas,
                test_size=config.test_size,
                seed=config.seed,
            ).accuracies
    except ValueError as exc:
        raise PromptError(f"cannot select alpha on these prompts: {exc}") from exc
    choice = AlphaChoice(config.alpha, alphas, accuracies)
    mean = choice.mean_accuracy
    if not np.isfinite(mean).any():  # every layer untouched: nothing to select on
        return choice
    best = alphas[mean == mean.max()]
    alpha = config.alpha if config.alpha in best else best[0]  # ties: keep the default
    return AlphaChoice(float(alpha), alphas, accuracies)


def _layer_tests(rows: list[LayerRow | None], design: LabelledDesign) -> LayerStatistics:
    """BH-corrected layer statistics of the layers whose tested rows vary; constant layers (e.g.
    D_l = 0 where alignment left a block untouched) get NaN and take no part in the BH
    correction."""
    idx = np.flatnonzero([row is not None for row in rows])
    part = design.statistics([rows[i] for i in idx]) if idx.size else None
    if part is not None and idx.size == len(rows):
        return part
    fields: dict = {"n_perm": design.n_perm, "q": design.q}
    for f in dataclasses.fields(LayerStatistics):
        if f.name in fields:
            continue
        full = (
            np.zeros(len(rows), bool) if f.name.endswith("reject") else np.full(len(rows), np.nan)
        )
        if part is not None:
            full[idx] = getattr(part, f.name)
        fields[f.name] = full
    return LayerStatistics(**fields)


def pair_geometry(
    h_aligned: ArrayLike,
    h_base: ArrayLike,
    is_harmful: ArrayLike,
    config: AuditConfig | None = None,
    layers: Sequence[int] | None = None,
) -> PairGeometry:
    """GFS (both variants), subspaces, angles, CKA, layer tests and Arditi effect sizes.

    Inputs are paired activations [n, L, d] of the same prompts; `layers` names the model layer
    of each of the L columns (default 0..L-1).
    """
    config = config or AuditConfig()
    aligned, base = np.asarray(h_aligned), np.asarray(h_base)
    harmful = np.asarray(is_harmful, dtype=bool)
    _check_inputs(aligned, base, harmful, config)
    n_layers = aligned.shape[1]
    layer_ids = tuple(range(n_layers)) if layers is None else tuple(int(x) for x in layers)
    if len(layer_ids) != n_layers:
        raise ValueError(f"{len(layer_ids)} layer ids for {n_layers} stored layers")
    try:
        train, test = stratified_split(harmful, config.test_size, config.seed)
    except ValueError as exc:
        raise PromptError(f"too few prompts for a held-out split: {exc}") from exc

    empty = pair_empty_layers(aligned, base)
    choice = _choose_alpha(aligned, base, harmful, config, empty) if config.select_alpha else None
    alpha = choice.alpha if choice is not None else config.alpha
    design = LabelledDesign.of(
        harmful, config.n_perm, config.q, config.test_size, config.seed, config.permanova_distance
    )
    inputs = PassInputs(aligned, base, harmful, empty, alpha, train, test, design)
    per_layer = measure_layers(inputs, config)
    subspace = SafetySubspace(
        layers=tuple(m.subspace for m in per_layer), eps=config.eps, fixed_k=config.k
    )
    gfs = {
        "code": gfs_from_layers([m.code for m in per_layer], empty, "code"),
        "paper": gfs_from_layers([m.paper for m in per_layer], empty, "paper", alpha),
    }
    return PairGeometry(
        layers=layer_ids,
        gfs=gfs,
        alpha=float(alpha),
        alpha_choice=choice,
        subspace=subspace,
        angles=consecutive_angles(subspace),
        cka=np.array([m.cka for m in per_layer]),
        stats=_layer_tests([m.stats for m in per_layer], design),
        stats_on=config.stats_on,
        permanova_distance=config.permanova_distance,
        arditi_d=np.array([m.arditi_d for m in per_layer]),
        arditi_d_heldout=np.array([m.arditi_d_heldout for m in per_layer]),
        relative_change=np.array([m.relative_change for m in per_layer]),
    )
