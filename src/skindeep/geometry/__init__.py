"""Pure numerical geometry of refusal: directions, GFS, subspaces, layer statistics, effective rank.

Inputs are numpy arrays (samples as rows: [n, d] or [n, L, d]; modification matrices as
[d, n] columns), outputs are frozen dataclasses of float64 arrays. Nothing here knows about
models or files. Subspace bases are [d, k] with orthonormal columns.
"""

from skindeep.geometry._checks import BoolArray, FloatArray
from skindeep.geometry._parallel import map_layers
from skindeep.geometry._probe import stratified_split
from skindeep.geometry.cka import cka_from_grams, linear_cka
from skindeep.geometry.directions import (
    CPCA_ALPHAS,
    AlphaSelection,
    CPCAResult,
    PCAResult,
    abs_cosine,
    arditi_direction,
    cohens_d,
    cpca_direction,
    cpca_subspace,
    pca_direction,
    pca_subspace,
    select_cpca_alpha,
)
from skindeep.geometry.gfs import (
    GFSLayer,
    GFSResult,
    geometric_fragility,
    gfs_from_layers,
    gfs_layer,
    layer_weights,
)
from skindeep.geometry.layer_tests import (
    LabelledDesign,
    LayerRow,
    labelled_layer_statistics,
    layer_statistics,
)
from skindeep.geometry.pair_layer import PairLayer
from skindeep.geometry.rank import (
    ModificationVariants,
    RankProfile,
    RankResult,
    SpectralGapResult,
    direction_recovery,
    effective_rank,
    effective_rank_by_layer,
    modification_variants,
    spectral_gap_bound,
)
from skindeep.geometry.stats import (
    BHResult,
    LayerStatistics,
    MMDResult,
    PermanovaResult,
    benjamini_hochberg,
    mmd2_unbiased,
    mmd_test,
    permanova,
    probe_accuracy,
)
from skindeep.geometry.subspace import (
    SafetySubspace,
    Subspace,
    centered_energy,
    consecutive_angles,
    energy_rank,
    layer_subspace,
    no_energy_layers,
    pair_empty_layers,
    pair_subspace,
    principal_angles,
    safety_subspace,
)

__all__ = [
    "CPCA_ALPHAS",
    "AlphaSelection",
    "BHResult",
    "BoolArray",
    "CPCAResult",
    "FloatArray",
    "GFSLayer",
    "GFSResult",
    "LabelledDesign",
    "LayerRow",
    "LayerStatistics",
    "MMDResult",
    "ModificationVariants",
    "PCAResult",
    "PairLayer",
    "PermanovaResult",
    "RankProfile",
    "RankResult",
    "SafetySubspace",
    "SpectralGapResult",
    "Subspace",
    "abs_cosine",
    "arditi_direction",
    "benjamini_hochberg",
    "centered_energy",
    "cka_from_grams",
    "cohens_d",
    "consecutive_angles",
    "cpca_direction",
    "cpca_subspace",
    "direction_recovery",
    "effective_rank",
    "effective_rank_by_layer",
    "energy_rank",
    "geometric_fragility",
    "gfs_from_layers",
    "gfs_layer",
    "labelled_layer_statistics",
    "layer_statistics",
    "layer_subspace",
    "layer_weights",
    "linear_cka",
    "map_layers",
    "mmd2_unbiased",
    "mmd_test",
    "modification_variants",
    "no_energy_layers",
    "pair_empty_layers",
    "pair_subspace",
    "pca_direction",
    "pca_subspace",
    "permanova",
    "principal_angles",
    "probe_accuracy",
    "safety_subspace",
    "select_cpca_alpha",
    "spectral_gap_bound",
    "stratified_split",
]
