"""Robustness sweep: GFS of one pair recomputed under the method's free choices, no forward pass.

From one pair's cached activations [n, L, d] (aligned and base at the same prompts) GFS is
recomputed one choice at a time: subspace rank k, cPCA alpha, the eps-energy rule for k,
layer weighting and the number of prompts. Prompt format and last-layer convention are
properties of the collection itself: the runner calls `convention_points` once per cached
collection (raw/chat, raw/normed last layer). Pure numpy on arrays; `store_arrays` is the
one helper that reads an `ActivationStore` pair.

Rank k > 1 generalises GFS = sum_l w_l d_l (1 - c_l) with a k-dimensional subspace V_l
(orthonormal [d, k]; top-k PCA of D_l, or top-k cPCA eigenvectors): d_l is the Mahalanobis
distance between the harmful and harmless means of the projections onto V_l (pooled
covariance, ddof = 1; pseudo-inverse if singular), c_l = ||V_l^T a_l|| is the cosine between
the Arditi direction and the subspace. At k = 1 both reduce to the paper's |Cohen's d| and
|cos(v_l, a_l)|, so the k = 1 point is exactly `geometry.geometric_fragility`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, field_validator

from skindeep.activations import ActivationStore
from skindeep.geometry import (
    CPCA_ALPHAS,
    arditi_direction,
    cpca_subspace,
    energy_rank,
    safety_subspace,
)
from skindeep.study.correlation import FloatArray

Weighting = Literal["code", "paper", "uniform"]
VARIANT_WEIGHTING: dict[str, Weighting] = {"code": "code", "paper": "paper"}


class SweepOptions(BaseModel):
    """The free choices the sweep varies, one at a time around the default settings.

    Field names follow the study config's `sweep` section, so `SweepOptions(**section)` works.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    k: tuple[int, ...] = (1, 2, 4, 8)
    """Fixed subspace ranks."""
    alpha: tuple[float, ...] = tuple(CPCA_ALPHAS)
    """cPCA alphas swept (paper variant only)."""
    eps: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25)
    """Energy tolerances: k_l = the eps-energy rank of D_l per layer, capped at `k_cap`."""
    weighting: tuple[Weighting, ...] = ("code", "paper", "uniform")
    """Layer weightings: code linspace(0.5, 1.5, L), paper l/L, uniform 1/L."""
    n_prompts: tuple[int, ...] = (16, 32, 64, 128, 256)
    """Prompts per class, drawn without replacement; counts above a class's size are skipped."""
    base_alpha: float = Field(100.0, ge=0)
    """cPCA alpha of the paper variant at the default settings (the audit's alpha)."""
    k_cap: int = Field(8, ge=1)
    """Largest k the eps rule may choose (the Mahalanobis distance needs k << prompts)."""
    seed: int = 0
    """Seed of the prompt subsamples."""

    @field_validator("k", "n_prompts")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(x < 1 for x in v):
            raise ValueError(f"must be positive integers, got {v}")
        return v

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= x < 1 for x in v):
            raise ValueError(f"eps must be in [0, 1), got {v}")
        return v


@dataclass(frozen=True)
class SweepPoint:
    """One pair's GFS under one choice: `setting` (k, alpha, eps, weighting, n_prompts, fmt,
    last_layer or default) takes `value`; `predictor` is gfs_code or gfs_paper."""

    setting: str
    value: str
    predictor: str
    gfs: float


def weights(n_layers: int, weighting: Weighting) -> FloatArray:
    """[L] layer weights summing to 1.

    >>> weights(3, "paper").tolist(), weights(2, "uniform").tolist()
    ([0.16666666666666666, 0.3333333333333333, 0.5], [0.5, 0.5])
    """
    if weighting == "code":
        raw = np.linspace(0.5, 1.5, n_layers)
    elif weighting == "paper":
        raw = np.arange(1, n_layers + 1, dtype=np.float64)
    elif weighting == "uniform":
        raw = np.ones(n_layers)
    else:
        raise ValueError(f"weighting must be code, paper or uniform, got {weighting!r}")
    return raw / raw.sum()


def mahalanobis(pos: FloatArray, neg: FloatArray) -> float:
    """Distance between class means of pos [n1, k], neg [n2, k] under the pooled covariance.

    >>> round(mahalanobis(np.array([[1.0], [3.0]]), np.array([[0.0], [2.0]])), 12)  # |Cohen's d|
    0.707106781187
    """
    delta = pos.mean(axis=0) - neg.mean(axis=0)
    n1, n2 = len(pos), len(neg)
    pooled = (np.cov(pos, rowvar=False, ddof=1) * (n1 - 1) + np.cov(neg, rowvar=False, ddof=1)
              * (n2 - 1)) / (n1 + n2 - 2)  # fmt: skip
    pooled = np.atleast_2d(pooled)
    return float(np.sqrt(max(float(delta @ np.linalg.pinv(pooled) @ delta), 0.0)))


@dataclass(frozen=True)
class _Layers:
    """Per-layer ingredients shared by every choice: D_l's PCA, Arditi directions, empty mask."""

    pca: list[FloatArray]  # [d, k_max] top PCA directions of D_l (k_max = max(ks, k_cap))
    spectra: list[FloatArray]  # singular values of centered D_l
    arditi: list[FloatArray]  # [d] unit Arditi direction of the aligned model
    empty: np.ndarray  # [L] no energy in D_l


def _prepare(aligned: np.ndarray, base: np.ndarray, harmful: np.ndarray, k_max: int) -> _Layers:
    n, _, d = aligned.shape
    diff = aligned.astype(np.float64) - base
    sub = safety_subspace(diff, k=min(k_max, n, d))
    arditi = [
        arditi_direction(aligned[harmful, i].astype(np.float64), aligned[~harmful, i])
        for i in range(aligned.shape[1])
    ]
    return _Layers(
        pca=list(sub.bases),
        spectra=[s.singular_values for s in sub.layers],
        arditi=arditi,
        empty=sub.empty,
    )


def _profile(
    aligned: np.ndarray,
    base: np.ndarray,
    harmful: np.ndarray,
    layers: _Layers,
    variant: str,
    ks: Sequence[int],
    alpha: float,
) -> FloatArray:
    """[L] d_l * (1 - c_l) with k_l = ks[l] (0 at empty layers)."""
    out = np.zeros(aligned.shape[1])
    for i, k in enumerate(ks):
        if layers.empty[i]:
            continue
        a_l = aligned[:, i].astype(np.float64)
        if variant == "code":
            basis = layers.pca[i][:, :k]
            proj = (a_l - base[:, i]) @ basis
        else:
            basis = cpca_subspace(a_l, base[:, i].astype(np.float64), alpha, k=k).basis
            proj = a_l @ basis
        c = min(float(np.linalg.norm(basis.T @ layers.arditi[i])), 1.0)
        out[i] = mahalanobis(proj[harmful], proj[~harmful]) * (1.0 - c)
    return out


def _gfs(profile: FloatArray, weighting: Weighting) -> float:
    return float(weights(profile.shape[0], weighting) @ profile)


def _check(h_aligned: ArrayLike, h_base: ArrayLike, is_harmful: ArrayLike) -> tuple:
    aligned, base = np.asarray(h_aligned), np.asarray(h_base)
    harmful = np.asarray(is_harmful, dtype=bool)
    if aligned.ndim != 3 or aligned.shape != base.shape:
        raise ValueError(f"expected paired [n, L, d] arrays, got {aligned.shape} vs {base.shape}")
    if harmful.shape != (aligned.shape[0],) or min(harmful.sum(), (~harmful).sum()) < 2:
        raise ValueError("is_harmful must be [n] with at least 2 harmful and 2 harmless prompts")
    return aligned, base, harmful


def default_gfs(
    h_aligned: ArrayLike, h_base: ArrayLike, is_harmful: ArrayLike, options: SweepOptions
) -> dict[str, float]:
    """gfs_code and gfs_paper at the default settings (k = 1, `base_alpha`, own weighting)."""
    aligned, base, harmful = _check(h_aligned, h_base, is_harmful)
    layers = _prepare(aligned, base, harmful, 1)
    ones = [1] * aligned.shape[1]
    return {
        f"gfs_{v}": _gfs(_profile(aligned, base, harmful, layers, v, ones, options.base_alpha),
                         VARIANT_WEIGHTING[v])
        for v in ("code", "paper")
    }  # fmt: skip


def convention_points(
    setting: Literal["fmt", "last_layer"],
    value: str,
    h_aligned: ArrayLike,
    h_base: ArrayLike,
    is_harmful: ArrayLike,
    options: SweepOptions,
) -> list[SweepPoint]:
    """Default-settings GFS of a collection made under one convention (e.g. fmt=chat)."""
    got = default_gfs(h_aligned, h_base, is_harmful, options)
    return [SweepPoint(setting, value, name, g) for name, g in got.items()]


def _subsample(harmful: np.ndarray, per_class: int, seed: int) -> np.ndarray | None:
    """Sorted indices of `per_class` harmful and `per_class` harmless prompts (seeded draw);
    None when a class has fewer prompts, or per_class < 2."""
    pos, neg = np.flatnonzero(harmful), np.flatnonzero(~harmful)
    if per_class < 2 or per_class > min(pos.size, neg.size):
        return None
    rng = np.random.default_rng(seed)
    pick = [rng.choice(pos, per_class, replace=False), rng.choice(neg, per_class, replace=False)]
    return np.sort(np.concatenate(pick))


def sweep_pair(
    h_aligned: ArrayLike,
    h_base: ArrayLike,
    is_harmful: ArrayLike,
    options: SweepOptions | None = None,
) -> list[SweepPoint]:
    """GFS (code and paper variants) of one pair under each choice, one choice at a time.

    h_aligned, h_base: [n, L, d] activations of the same prompts; is_harmful: [n]. Returns the
    default point (setting 'default') and one point per value of k, alpha (paper only), eps,
    weighting and n_prompts (prompts per class), the other choices at their defaults.
    """
    opt = options or SweepOptions()
    aligned, base, harmful = _check(h_aligned, h_base, is_harmful)
    n_layers = aligned.shape[1]
    layers = _prepare(aligned, base, harmful, max((*opt.k, opt.k_cap)))
    points: list[SweepPoint] = []
    profiles: dict[tuple[str, int], FloatArray] = {}

    def fixed(variant: str, k: int, alpha: float = opt.base_alpha) -> FloatArray:
        key = (variant, k) if alpha == opt.base_alpha else (f"{variant}@{alpha}", k)
        if key not in profiles:
            profiles[key] = _profile(aligned, base, harmful, layers, variant, [k] * n_layers, alpha)
        return profiles[key]

    for v in ("code", "paper"):
        name, own = f"gfs_{v}", VARIANT_WEIGHTING[v]
        points.append(SweepPoint("default", "-", name, _gfs(fixed(v, 1), own)))
        points += [SweepPoint("k", str(k), name, _gfs(fixed(v, k), own)) for k in opt.k]
        for w in opt.weighting:
            points.append(SweepPoint("weighting", w, name, _gfs(fixed(v, 1), w)))
        for eps in opt.eps:
            ks = [min(max(1, energy_rank(s, eps)), opt.k_cap, layers.pca[i].shape[1])
                  for i, s in enumerate(layers.spectra)]  # fmt: skip
            prof = _profile(aligned, base, harmful, layers, v, ks, opt.base_alpha)
            points.append(SweepPoint("eps", f"{eps:g}", name, _gfs(prof, own)))
    for a in opt.alpha:
        points.append(
            SweepPoint("alpha", f"{a:g}", "gfs_paper", _gfs(fixed("paper", 1, a), "paper"))
        )
    for count in opt.n_prompts:
        idx = _subsample(harmful, count, opt.seed)
        if idx is None:
            continue
        sub = default_gfs(aligned[idx], base[idx], harmful[idx], opt)
        points += [SweepPoint("n_prompts", str(count), k, g) for k, g in sub.items()]
    return points


def store_arrays(
    aligned: ActivationStore, base: ActivationStore, harmful_label: str = "harmful"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h_aligned [n, L, d], h_base [n, L, d], is_harmful [n]) from a pair of cached collections,
    checked to hold the same prompts, labels and layers."""
    if aligned.prompts != base.prompts or aligned.labels != base.labels:
        raise ValueError("the aligned and base collections hold different prompts or labels")
    for field in ("layers", "site", "positions", "fmt", "last_layer"):
        a, b = getattr(aligned.spec, field), getattr(base.spec, field)
        if a != b:
            raise ValueError(f"the aligned and base collections differ in {field}: {a} vs {b}")
    if not aligned.spec.squeeze_positions:
        raise ValueError("the sweep reads one position per prompt (positions='last')")
    return aligned.array(), base.array(), aligned.mask(harmful_label)
