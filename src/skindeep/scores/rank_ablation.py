"""Limit (b) of the effective-rank audit: is SVD order the causal order?

The left singular vectors u_1, u_2, ... of a modification matrix at one layer are ablated from
the block outputs of SPEC's narrow and wide bands (all positions), cumulatively (the first k)
and one at a time, through the dose-response code: keyword refusal on greedy generations with
Wilson intervals, against random orthonormal nulls of the same k. Degenerate generations stay in
every denominator (counted as non-refusals) and their number is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from skindeep.dose import DoseOptions, DoseResponse, dose_response, named_basis
from skindeep.errors import ConfigError, SkindeepError
from skindeep.geometry import energy_rank
from skindeep.interventions import bands
from skindeep.models import LoadedModel
from skindeep.prompts import PromptSet
from skindeep.runtime import ProgressLike
from skindeep.scores.rank_config import RankAuditConfig
from skindeep.scores.rank_pair import RankGeometry

FLAGGED = "compliance"
"""Degenerate (empty, repetitive) generations count as non-refusals, never dropped."""


@dataclass(frozen=True)
class BandCurves:
    """Refusal under ablation in one band: the first k directions, and each u_i alone."""

    band: str
    layers: tuple[int, ...]
    cumulative: DoseResponse
    """One curve ('svd') over the capped doses k, with null bands per k."""
    alone: DoseResponse
    """One curve per u_i at k = 1, with the k = 1 null band."""

    @property
    def cumulative_rates(self) -> list[float]:
        """Refusal rate after ablating the first k directions, per k."""
        return [p.refusal.rate for p in self.cumulative.curves[0].points]

    @property
    def alone_rates(self) -> list[float]:
        """Refusal rate after ablating u_i alone, i = 1, 2, ..."""
        return [c.points[0].refusal.rate for c in self.alone.curves]

    @property
    def alone_scores(self) -> list[float]:
        """Mean refusal log-odds after ablating u_i alone (continuous, breaks rate ties)."""
        return [c.points[0].score for c in self.alone.curves]

    def summary(self) -> dict[str, Any]:
        """Monotonicity of the cumulative curve and rank correlation of SVD order with effect:
        a negative Spearman rho would mean later directions matter less (SVD order = causal
        order would give rates rising with i)."""
        cum, alone, scores = self.cumulative_rates, self.alone_rates, self.alone_scores
        return {
            "band": self.band,
            "layers": list(self.layers),
            "baseline": self.cumulative.baseline.refusal.rate,
            "cumulative_rates": cum,
            "cumulative_monotone": bool(all(b <= a + 1e-12 for a, b in pairwise(cum))),
            "alone_rates": alone,
            "alone_scores": scores,
            "most_effective_alone": _argmin_or_none(alone),
            "most_effective_alone_by_score": _argmin_or_none(scores),
            "spearman_index_vs_rate": _spearman(alone),
            "spearman_index_vs_score": _spearman(scores),
        }


def _argmin_or_none(values: list[float]) -> int | None:
    """1-based index of the smallest value; None when all are equal (no direction stands out)."""
    finite = np.asarray(values, dtype=np.float64)
    if finite.size == 0 or not np.isfinite(finite).all() or np.ptp(finite) == 0:
        return None
    return int(np.argmin(finite)) + 1


def _spearman(values: list[float]) -> float:
    """Spearman rho of (i, value_i); NaN with fewer than 3 values or no variation."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 3 or not np.isfinite(arr).all() or np.ptp(arr) == 0:
        return float("nan")
    return float(spearmanr(np.arange(1, arr.size + 1), arr).statistic)


@dataclass(frozen=True)
class RankAblation:
    """Limit (b): which matrix and layer the directions came from, and the curves per band."""

    matrix: str
    layer: int
    rank_eps: int
    numerical_rank: int
    ks: tuple[int, ...]
    bands: tuple[BandCurves, ...]


def _basis_at(
    a_chat: np.ndarray,
    b_chat: np.ndarray,
    harmful: np.ndarray,
    row: int,
    matrix: str,
    eps: float,
) -> tuple[np.ndarray, int, int]:
    """Left singular vectors [d, r] of M_template or M_DiD at one stored layer, r the numerical
    rank, and rank_eps."""
    diff = a_chat[:, row].astype(np.float64) - b_chat[:, row]
    m = diff[harmful]
    if matrix == "did":
        m = m - diff[~harmful].mean(axis=0)
    u, s, _ = np.linalg.svd(m.T, full_matrices=False)
    tol = max(m.shape) * np.finfo(np.float64).eps * float(np.abs(m).max(initial=0.0))
    r = int(np.sum(s > tol))
    if r == 0:
        raise SkindeepError(f"M_{matrix} is zero at this layer: no direction to ablate")
    return u[:, :r], r, energy_rank(s, eps)


def rank_ablation(
    aligned: LoadedModel,
    a_chat: np.ndarray,
    b_chat: np.ndarray,
    is_harmful: np.ndarray,
    geometry: RankGeometry,
    harmful: PromptSet,
    harmless: PromptSet,
    config: RankAuditConfig,
    progress: ProgressLike = None,
) -> RankAblation:
    """Ablate the SVD directions of M at the GFS peak (or `config.ablation_layer`) in both bands."""
    n_layers = aligned.adapter.num_layers
    layer = geometry.peak_layer if config.ablation_layer is None else config.ablation_layer
    if not -n_layers <= layer < n_layers:
        raise ConfigError(f"--ablation-layer {layer} is out of range for {n_layers} layers")
    layer %= n_layers
    if layer not in geometry.layers:
        raise ConfigError(f"--ablation-layer {layer} was not read; add it to --layers")
    U, r, r_eps = _basis_at(
        a_chat, b_chat, is_harmful, geometry.layers.index(layer), config.ablation_matrix, config.eps
    )
    ks = tuple(k for k in config.ks if k <= r)
    if not ks:
        raise ConfigError(f"--ks: every k in {list(config.ks)} exceeds the rank {r} of M there")
    n_alone = min(config.n_alone, r)
    prompts = list(harmful.prompts[: config.n_ablation_prompts])
    controls = list(harmless.prompts[: config.n_ablation_prompts])
    source = f"M_{config.ablation_matrix} of {aligned.source}, layer {layer}"
    cumulative_basis = named_basis("svd", U[:, : max(ks)], source, layer)
    singles = [named_basis(f"u{i + 1}", U[:, i], source, layer) for i in range(n_alone)]
    found = bands(n_layers)
    curves = []
    for name, band in (("narrow", found.narrow), ("wide", found.wide)):
        common: dict[str, Any] = dict(
            mode="band", layers=tuple(band), n_random=config.n_random, seed=config.seed,
            max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, fmt="chat",
            flagged=FLAGGED,
        )  # fmt: skip
        cum = dose_response(
            aligned, [cumulative_basis], prompts, controls, DoseOptions(ks=ks, **common),
            progress=progress,
        )  # fmt: skip
        alone = dose_response(
            aligned, singles, prompts, controls, DoseOptions(ks=(1,), **common),
            progress=progress,
        )  # fmt: skip
        curves.append(BandCurves(name, tuple(band), cum, alone))
    return RankAblation(config.ablation_matrix, layer, r_eps, r, ks, tuple(curves))
