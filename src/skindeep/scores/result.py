"""What an audit returns: the geometry of a pair plus where every number came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from skindeep.activations import LAST_LAYER_NOTES, CollectionSpec
from skindeep.artifacts import json_ready
from skindeep.geometry import GFSResult
from skindeep.prompts import PromptSet
from skindeep.scores.config import AuditConfig
from skindeep.scores.pair import PairGeometry

RESULT_FORMAT = 1
"""Version of the results JSON layout."""

PERMANOVA_SUMS = {
    "euclidean": "squared Euclidean distances ||x - y||^2 (classical trace F)",
    "sqeuclidean": "squares of squared Euclidean distances ||x - y||^4",
}
"""What enters the PERMANOVA sums of squares under each `permanova_distance`."""


@dataclass(frozen=True)
class ModelInfo:
    """Identity and shape of one model of the pair."""

    source: str
    fingerprint: str
    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    dtype: str


@dataclass(frozen=True)
class PromptInfo:
    """Which prompts one class used."""

    name: str
    source: str
    n: int

    @classmethod
    def of(cls, ps: PromptSet) -> PromptInfo:
        """Describe a prompt set."""
        return cls(ps.name, ps.source, len(ps))


@dataclass(frozen=True)
class AuditResult:
    """One aligned/base audit: config, provenance, and the pair's geometry."""

    config: AuditConfig
    aligned: ModelInfo
    base: ModelInfo
    harmful: PromptInfo
    harmless: PromptInfo
    spec: CollectionSpec
    """How the aligned activations were read (site, positions, format, template, layers)."""
    stores: dict[str, str]
    """Activation store folder of each model ('aligned', 'base'), in the cache."""
    geometry: PairGeometry

    @property
    def primary(self) -> GFSResult:
        """The GFS result of the configured headline variant."""
        return self.geometry.gfs[self.config.variant]

    @property
    def gfs(self) -> float:
        """Headline GFS."""
        return self.primary.gfs

    @property
    def peak_index(self) -> int:
        """Row of the peak layer (argmax d of the headline variant) in the per-layer arrays."""
        return self.primary.peak_layer

    @property
    def peak_layer(self) -> int:
        """Model layer index of the headline peak."""
        return self.geometry.layers[self.peak_index]

    def _gfs_json(self, res: GFSResult) -> dict[str, Any]:
        """One variant's scalar, peak and profiles."""
        return {
            "gfs": res.gfs,
            "alpha": res.alpha,
            "peak_index": res.peak_layer,
            "peak_layer": self.geometry.layers[res.peak_layer],
            "d": res.d,
            "c": res.c,
            "w": res.w,
            "contribution": res.contribution,
            "empty": res.empty,
        }

    def conventions(self) -> dict[str, Any]:
        """Every convention the numbers depend on, each named in words (audit.json)."""
        spec, config = self.spec, self.config
        site = {
            "block_out": "block outputs: hidden_states[l+1] (embedding output dropped)",
            "block_in": "block inputs: hidden_states[l]",
        }[spec.site]
        return {
            "preset": config.preset,
            "activations": site,
            "last_layer": spec.last_layer,
            "last_layer_note": LAST_LAYER_NOTES[spec.last_layer],
            "format": spec.fmt,
            "template": spec.template,
            "positions": spec.positions,
            "layers": "all" if config.layers is None else list(config.layers),
            "code_direction": "PC1 of D_l = H_aligned,l - H_base,l over all prompts (centered)",
            "paper_direction": "top eigenvector of cov(H_aligned,l) - alpha cov(H_base,l), "
            f"alpha={self.geometry.alpha}",
            "gfs_variant": config.variant,
            "layer_weights": {
                "code": "linspace(0.5, 1.5, L), normalised",
                "paper": "l / L, normalised",
            },
            "dtype": {"aligned": self.aligned.dtype, "base": self.base.dtype},
        }

    def to_json(self) -> dict[str, Any]:
        """The complete results document (no arrays larger than per-layer spectra)."""
        g = self.geometry
        sub = g.subspace
        choice = g.alpha_choice
        return json_ready(
            {
                "format": RESULT_FORMAT,
                "kind": "skindeep.audit",
                "config": self.config.json_dict(),
                "models": {"aligned": asdict(self.aligned), "base": asdict(self.base)},
                "prompts": {"harmful": asdict(self.harmful), "harmless": asdict(self.harmless)},
                "activations": {
                    "site": self.spec.site,
                    "positions": self.spec.positions,
                    "format": self.spec.fmt,
                    "template": self.spec.template,
                    "last_layer": self.spec.last_layer,
                    "last_layer_note": LAST_LAYER_NOTES[self.spec.last_layer],
                    "layers": list(g.layers),
                    "stores": self.stores,
                },
                "conventions": self.conventions(),
                "headline": {
                    "variant": self.config.variant,
                    "gfs": self.gfs,
                    "peak_layer": self.peak_layer,
                    "d_at_peak": self.primary.d[self.peak_index],
                    "arditi_d_at_peak": g.arditi_d[self.peak_index],
                    "arditi_d_heldout_at_peak": g.arditi_d_heldout[self.peak_index],
                },
                "gfs": {name: self._gfs_json(res) for name, res in g.gfs.items()},
                "alpha": g.alpha,
                "alpha_selection": None
                if choice is None
                else {
                    "alpha": choice.alpha,
                    "alphas": choice.alphas,
                    "accuracy_by_layer": choice.accuracies,
                    "mean_accuracy": choice.mean_accuracy,
                },
                "arditi": {"d": g.arditi_d, "d_heldout": g.arditi_d_heldout},
                "subspace": {
                    "on": "difference (aligned - base), centered PCA",
                    "eps": sub.eps,
                    "fixed_k": sub.fixed_k,
                    "k": sub.ks,
                    "empty": sub.empty,
                    "energy": [s.energy for s in sub.layers],
                    "singular_values": [s.singular_values for s in sub.layers],
                },
                "principal_angles": {
                    "between": [list(p) for p in pairwise(g.layers)],
                    "radians": list(g.angles),
                    "undefined": "null where either layer's subspace is empty (D_l = 0)",
                },
                "cka": g.cka,
                "relative_change": g.relative_change,
                "layer_statistics": {
                    "on": g.stats_on,
                    "permanova_distance": g.permanova_distance,
                    "permanova_sums_over": PERMANOVA_SUMS[g.permanova_distance],
                    **asdict(g.stats),
                },
            }
        )

    def layer_rows(self) -> list[dict[str, Any]]:
        """One flat row per layer, for the CSV/parquet table."""
        g, st = self.geometry, self.geometry.stats
        rows = []
        for i, layer in enumerate(g.layers):
            row: dict[str, Any] = {"layer": layer}
            for name, res in g.gfs.items():
                for key in ("d", "c", "w", "contribution"):
                    row[f"{name}_{key}"] = float(getattr(res, key)[i])
            angles = g.angles[i] if i < len(g.angles) else None
            row.update(
                arditi_d=float(g.arditi_d[i]),
                arditi_d_heldout=float(g.arditi_d_heldout[i]),
                empty=bool(g.empty[i]),
                subspace_k=int(g.subspace.ks[i]),
                subspace_energy=float(g.subspace.layers[i].energy),
                min_angle_to_next_deg=None if angles is None else float(np.degrees(angles[0])),
                max_angle_to_next_deg=None if angles is None else float(np.degrees(angles[-1])),
                relative_change=float(g.relative_change[i]),
                cka=float(g.cka[i]),
                pseudo_f=float(st.pseudo_f[i]),
                permanova_p=float(st.permanova_p[i]),
                permanova_p_adjusted=float(st.permanova_p_adjusted[i]),
                mmd2=float(st.mmd2[i]),
                mmd_p=float(st.mmd_p[i]),
                mmd_p_adjusted=float(st.mmd_p_adjusted[i]),
                probe_accuracy=float(st.probe_accuracy[i]),
            )
            rows.append(json_ready(row))
        return rows
