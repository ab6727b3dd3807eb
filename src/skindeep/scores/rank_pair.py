"""Pure numerical glue of the effective-rank audit: every rank measure of a pair from arrays.

Inputs are paired last-token activations [n, L, d] of the same prompts (aligned and base model,
chat and raw formats); outputs are per-layer arrays. Nothing here loads a model or touches
files: `scores.rank_audit` feeds it the cached activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry import (
    FloatArray,
    abs_cosine,
    arditi_direction,
    effective_rank,
    geometric_fragility,
    modification_variants,
    spectral_gap_bound,
)

VARIANTS: tuple[str, ...] = ("naive", "template", "aligned", "did")
"""The four modification matrices, in SPEC order."""


@dataclass(frozen=True)
class VariantRank:
    """rank_eps, rho (both normalisations, uncentered and centered) and |cos(u_1, a)| per layer
    of one modification matrix stack [L, d, n]."""

    name: str
    n_columns: int
    """n: prompts (columns) in the matrix."""
    d: int
    """Hidden size (rows)."""
    ranks: np.ndarray
    """[L] rank_eps, uncentered (0 where M_l is zero)."""
    ranks_centered: np.ndarray
    """[L] rank_eps after subtracting the mean column."""
    cos: FloatArray
    """[L] |cos(u_1, a_l)| against the reference direction a_l; NaN where M_l is zero."""
    spectra: tuple[FloatArray, ...]
    """Per layer, the uncentered singular values, descending."""

    @property
    def rho(self) -> FloatArray:
        """[L] rank_eps / d."""
        return self.ranks / self.d

    @property
    def rho_min(self) -> FloatArray:
        """[L] rank_eps / min(d, n)."""
        return self.ranks / min(self.d, self.n_columns)

    @property
    def rho_centered(self) -> FloatArray:
        """[L] centered rank_eps / d."""
        return self.ranks_centered / self.d

    @property
    def rho_min_centered(self) -> FloatArray:
        """[L] centered rank_eps / min(d, n)."""
        return self.ranks_centered / min(self.d, self.n_columns)

    def means(self) -> dict[str, float]:
        """The per-model summaries: every rho averaged over layers."""
        return {
            "rho": float(self.rho.mean()),
            "rho_min": float(self.rho_min.mean()),
            "rho_centered": float(self.rho_centered.mean()),
            "rho_min_centered": float(self.rho_min_centered.mean()),
        }


def variant_rank(name: str, M: ArrayLike, reference: ArrayLike, eps: float = 0.05) -> VariantRank:
    """Rank profile of a stack M [L, d, n] and |cos| of each layer's u_1 with reference [L, d].

    One SVD per layer and centering; only u_1 and the spectrum are kept (real models have large d).
    """
    m = np.asarray(M, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if m.ndim != 3 or ref.shape != m.shape[:2]:
        raise ValueError(f"expected M [L, d, n] and reference [L, d], got {m.shape}, {ref.shape}")
    n_layers, d, n = m.shape
    ranks, ranks_c = np.zeros(n_layers, np.int64), np.zeros(n_layers, np.int64)
    cos = np.full(n_layers, np.nan)
    spectra = []
    for layer in range(n_layers):
        res = effective_rank(m[layer], eps, centered=False, n_vectors=1)
        ranks[layer] = res.rank_eps
        spectra.append(res.singular_values)
        if res.rank_eps > 0 and np.all(np.isfinite(ref[layer])):
            cos[layer] = abs_cosine(res.left_singular_vectors[:, 0], ref[layer])
        if n >= 2:
            ranks_c[layer] = effective_rank(m[layer], eps, centered=True, n_vectors=1).rank_eps
    return VariantRank(name, n, d, ranks, ranks_c, cos, tuple(spectra))


@dataclass(frozen=True)
class NeutralActivations:
    """One neutral concept contrast (e.g. register en vs fr): chat activations of both models."""

    name: str
    classes: tuple[str, str]
    """Names of the two prompt classes; the first is the 'concept' (columns of M_template)."""
    h_aligned: ArrayLike
    """[n, L, d] aligned model, chat format."""
    h_base: ArrayLike
    """[n, L, d] base model fed the aligned chat template."""
    is_first: ArrayLike
    """[n] True for prompts of the first class."""


@dataclass(frozen=True)
class NeutralRank:
    """Limit (a): the rank of M_template (and M_DiD) on a neutral contrast, beside safety's."""

    name: str
    classes: tuple[str, str]
    template: VariantRank
    """M_template on the first class's prompts; cos against the SAFETY Arditi direction."""
    did: VariantRank
    """First class minus the mean of the second; cos against the contrast's own mean
    difference (how well M_DiD finds the neutral concept)."""
    n_first: int
    n_second: int


@dataclass(frozen=True)
class GapRow:
    """Limit (c) at one (layer, reference): kappa_lb, its ceiling 2/(eps r) and the hypothesis."""

    layer: int
    reference: str
    r: int
    n_columns: int
    kappa_lb: float
    ceiling: float
    holds: bool


@dataclass(frozen=True)
class RankGeometry:
    """Everything the rank audit measures on one pair; per-layer arrays follow `layers`."""

    layers: tuple[int, ...]
    eps: float
    variants: dict[str, VariantRank]
    """naive, template, aligned, did (naive/aligned absent without raw activations)."""
    peak_index: int
    """Row of the GFS (code variant) peak layer, argmax_l d_l on the chat activations."""
    gfs: float
    """The code-variant GFS, for reference."""
    neutral: tuple[NeutralRank, ...]
    gaps: tuple[GapRow, ...]
    base_contrast: FloatArray
    """[L] |m_base| / |m_aligned - m_base|, m the harmful-minus-harmless mean difference (chat):
    how large the separation the base already had is against the change alignment made to it.
    M_DiD's mean column is exactly that change, so where this ratio is large the aligned Arditi
    direction is mostly inherited and u_1(M_DiD) cannot match it (|cos| = 1/sqrt(1 + ratio^2)
    when the inherited and the new parts are orthogonal). NaN where alignment left m unchanged."""
    n_harmful: int
    n_harmless: int
    d: int

    @property
    def peak_layer(self) -> int:
        """Model layer index of the GFS peak."""
        return self.layers[self.peak_index]

    @property
    def gap_share(self) -> float:
        """Share of (layer, reference) pairs where kappa_lb >= 1; NaN without pairs."""
        return float(np.mean([g.holds for g in self.gaps])) if self.gaps else float("nan")


def _gap_rows(
    layers: Sequence[int],
    m_h: FloatArray,
    references: Mapping[str, FloatArray],
    eps: float,
) -> tuple[GapRow, ...]:
    """kappa_lb per layer and reference, on the first min(n_h, n_u) columns of each (paired).

    Layers where M_h is zero (alignment left them untouched) have no rank and are skipped.
    """
    rows = []
    for name, m_u in references.items():
        n = min(m_h.shape[2], m_u.shape[2])
        if n < 1:
            continue
        for i, layer in enumerate(layers):
            mh, mu = m_h[i, :, :n], m_u[i, :, :n]
            if not np.any(mh):
                continue
            res = spectral_gap_bound(mh, mu, eps=eps)
            rows.append(GapRow(layer, name, res.r, n, res.kappa_lb, res.ceiling, res.holds))
    return tuple(rows)


def _neutral_rank(
    x: NeutralActivations, safety_arditi: FloatArray, eps: float
) -> tuple[NeutralRank, dict[str, FloatArray]]:
    """Template and DiD ranks of one neutral contrast, and its classes' M_template columns
    (the references of limit (c))."""
    a, b = np.asarray(x.h_aligned), np.asarray(x.h_base)
    first = np.asarray(x.is_first, dtype=bool)
    var = modification_variants(a, None, b, None, first, safety_only=False)
    own = arditi_direction(a[first], a[~first])  # the contrast's own mean difference
    result = NeutralRank(
        name=x.name,
        classes=x.classes,
        template=variant_rank("template", var.template[:, :, first], safety_arditi, eps),
        did=variant_rank("did", var.did, own, eps),
        n_first=int(first.sum()),
        n_second=int((~first).sum()),
    )
    refs = {
        f"{x.name}:{x.classes[0]}": var.template[:, :, first],
        f"{x.name}:{x.classes[1]}": var.template[:, :, ~first],
    }
    return result, refs


def base_contrast(h_aligned: ArrayLike, h_base: ArrayLike, is_harmful: ArrayLike) -> FloatArray:
    """[L] |m_base| / |m_aligned - m_base| per layer (see `RankGeometry.base_contrast`)."""
    a, b = np.asarray(h_aligned, dtype=np.float64), np.asarray(h_base, dtype=np.float64)
    harmful = np.asarray(is_harmful, dtype=bool)
    m_base = b[harmful].mean(0) - b[~harmful].mean(0)  # [L, d]
    change = a[harmful].mean(0) - a[~harmful].mean(0) - m_base
    base_norm, change_norm = np.linalg.norm(m_base, axis=1), np.linalg.norm(change, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(change_norm > 0, base_norm / change_norm, np.nan)


def rank_geometry(
    h_aligned_chat: ArrayLike,
    h_base_chat: ArrayLike,
    is_harmful: ArrayLike,
    h_base_raw: ArrayLike | None = None,
    h_aligned_raw: ArrayLike | None = None,
    neutral: Sequence[NeutralActivations] = (),
    eps: float = 0.05,
    layers: Sequence[int] | None = None,
) -> RankGeometry:
    """The effective-rank audit of one pair: four variants, neutral contrasts, spectral gaps.

    M_naive/M_template/M_aligned hold the harmful columns (the paper's safety matrices), M_DiD
    those minus the mean harmless column. Each variant's u_1 is compared with the aligned
    model's Arditi direction per layer. Limit (c) pairs the harmful M_template with reference
    matrices: the harmless M_template columns and every neutral class's M_template columns.
    """
    harmful = np.asarray(is_harmful, dtype=bool)
    var = modification_variants(
        h_aligned_chat, h_base_raw, h_base_chat, h_aligned_raw, harmful, safety_only=True
    )
    gfs = geometric_fragility(h_aligned_chat, h_base_chat, harmful, "code")
    n_layers, d = gfs.arditi.shape
    layer_ids = tuple(range(n_layers)) if layers is None else tuple(int(x) for x in layers)
    if len(layer_ids) != n_layers:
        raise ValueError(f"{len(layer_ids)} layer ids for {n_layers} stored layers")
    matrices = {"naive": var.naive, "template": var.template, "aligned": var.aligned}
    matrices["did"] = var.did
    variants = {
        name: variant_rank(name, m, gfs.arditi, eps)
        for name, m in matrices.items()
        if m is not None
    }
    template_all = modification_variants(
        h_aligned_chat, None, h_base_chat, None, harmful, safety_only=False
    ).template
    references = {"harmless": template_all[:, :, ~harmful]}
    neutral_ranks = []
    for x in neutral:
        nr, refs = _neutral_rank(x, gfs.arditi, eps)
        neutral_ranks.append(nr)
        references.update(refs)
    return RankGeometry(
        layers=layer_ids,
        eps=float(eps),
        variants=variants,
        peak_index=gfs.peak_layer,
        gfs=gfs.gfs,
        neutral=tuple(neutral_ranks),
        gaps=_gap_rows(layer_ids, var.template, references, eps),
        base_contrast=base_contrast(h_aligned_chat, h_base_chat, harmful),
        n_harmful=int(harmful.sum()),
        n_harmless=int((~harmful).sum()),
        d=d,
    )


def rank_predictors(geometry: RankGeometry) -> dict[str, float]:
    """Per-model scalar predictors for the study: mean rho per variant, cos at the GFS peak,
    the neutral contrasts' rho, the spectral-gap share and the base contrast at the peak."""
    out: dict[str, float] = {}
    i = geometry.peak_index
    for name, v in geometry.variants.items():
        out[f"rho_{name}"] = v.means()["rho"]
        out[f"rho_{name}_centered"] = v.means()["rho_centered"]
        out[f"cos_{name}_peak"] = float(v.cos[i])
    for nr in geometry.neutral:
        out[f"rho_neutral_{nr.name}"] = nr.template.means()["rho"]
    out["gap_share"] = geometry.gap_share
    out["base_contrast_peak"] = float(geometry.base_contrast[i])
    return out
