"""From a model pair to scores: the audit config, pipeline glue and its result objects.

Names load lazily: the pure geometry (`pair_geometry`) and the config import without torch.
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "PairMismatchError",
            "PairStores",
            "audit_pair",
            "check_compatible",
            "collect_pair",
            "model_info",
        ],
        ".audit",
    ),
    "AuditConfig": ".config",
    **dict.fromkeys(["AlphaChoice", "PairGeometry", "pair_geometry"], ".pair"),
    **dict.fromkeys(["AuditResult", "ModelInfo", "PromptInfo"], ".result"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
