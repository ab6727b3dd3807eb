"""Benign fine-tuning (LoRA or full) and refusal retention before/after (SPEC 2, 5).

Names load lazily, so the configs import without torch.
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ["DEFAULT_ORGANISM_N", "SPEC_NS", "SPEC_SEEDS", "FinetuneConfig", "RetentionConfig"],
        ".config",
    ),
    **dict.fromkeys(
        [
            "Pair",
            "PairSet",
            "check_in_vocabulary",
            "filter_refusals",
            "identity_shift",
            "load_pairs",
            "organism_heldout",
            "organism_pairs",
            "benign_pairs",
            "retention_sets",
        ],
        ".data",
    ),
    **dict.fromkeys(
        [
            "Measurement",
            "RetentionCell",
            "RetentionResult",
            "RetentionRow",
            "measure",
            "retention_ratio",
            "run_retention",
            "summarise",
        ],
        ".retention",
    ),
    **dict.fromkeys(
        ["Start", "TrackedSeed", "Tracker", "TrackingConfig", "track_refusal"], ".tracking"
    ),
    "retention_experiment": ".experiment",
    **dict.fromkeys(["finetune", "merge_adapter", "save_adapter", "unload"], ".train"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
