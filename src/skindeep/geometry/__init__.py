"""Pure numerical geometry of refusal: directions, GFS, subspaces, layer statistics, effective rank.

Inputs are numpy arrays (samples as rows: [n, d] or [n, L, d]; modification matrices as
[d, n] columns), outputs are frozen dataclasses of float64 arrays. Nothing here knows about
models or files. Subspace bases are [d, k] with orthonormal columns.
"""

from skindeep.geometry._checks import BoolArray, FloatArray
from skindeep.geometry._parallel import map_layers
from skindeep.geometry._probe import stratified_split
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
from skindeep.geometry.gfs import GFSResult, geometric_fragility, layer_weights
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
    labelled_layer_statistics,
    layer_statistics,
    mmd2_unbiased,
    mmd_test,
    permanova,
    probe_accuracy,
)
from skindeep.geometry.subspace import (
    SafetySubspace,
    Subspace,
    consecutive_angles,
    energy_rank,
    linear_cka,
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
    "GFSResult",
    "LayerStatistics",
    "MMDResult",
    "ModificationVariants",
    "PCAResult",
    "PermanovaResult",
    "RankProfile",
    "RankResult",
    "SafetySubspace",
    "SpectralGapResult",
    "Subspace",
    "abs_cosine",
    "arditi_direction",
    "benjamini_hochberg",
    "cohens_d",
    "consecutive_angles",
    "cpca_direction",
    "cpca_subspace",
    "direction_recovery",
    "effective_rank",
    "effective_rank_by_layer",
    "energy_rank",
    "geometric_fragility",
    "labelled_layer_statistics",
    "layer_statistics",
    "layer_weights",
    "linear_cka",
    "map_layers",
    "mmd2_unbiased",
    "mmd_test",
    "modification_variants",
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
