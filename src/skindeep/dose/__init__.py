"""Dose-response of refusal to directional ablation, and the experiment behind `skindeep ablate`.

A basis is an ordered [d, k_max] set of orthonormal directions (Arditi's selected direction,
PCA or cPCA of aligned-vs-base differences, the SVD of a modification matrix, or a tensor from
a safetensors file; see the builder registry); ablating its first k columns is dose k. Names
load lazily (the configs import without torch).
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["BASIS_KINDS", "BasisKind", "activation_basis"], ".activation"),
    **dict.fromkeys(["BasisError", "NamedBasis", "load_basis", "named_basis"], ".bases"),
    **dict.fromkeys(["AblationRun", "ablate", "check_inputs"], ".experiment"),
    "dose_figure": ".figure",
    **dict.fromkeys(["DEFAULT_KS", "MIN_NULL_DRAWS", "AblateConfig", "DoseOptions"], ".options"),
    **dict.fromkeys(["BASIS_BUILDERS", "BasisRequest", "build_bases", "builder_name"], ".registry"),
    **dict.fromkeys(
        ["CausalTest", "DoseCurve", "DosePoint", "DoseResponse", "NullBand"], ".result"
    ),
    **dict.fromkeys(["dose_response", "harmless_reference"], ".runner"),
    "weight_check": ".weights",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
