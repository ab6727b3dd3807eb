"""Benign fine-tuning (LoRA or full) and refusal retention before/after (SPEC 2, 5)."""

from skindeep.finetune.config import (
    DEFAULT_ORGANISM_N,
    SPEC_NS,
    SPEC_SEEDS,
    FinetuneConfig,
    RetentionConfig,
)
from skindeep.finetune.data import (
    Pair,
    PairSet,
    check_in_vocabulary,
    filter_refusals,
    identity_shift,
    load_pairs,
    organism_heldout,
    organism_pairs,
)
from skindeep.finetune.retention import (
    Measurement,
    RetentionCell,
    RetentionResult,
    RetentionRow,
    measure,
    retention_ratio,
    run_retention,
    summarise,
)
from skindeep.finetune.tracking import (
    Start,
    TrackedSeed,
    Tracker,
    TrackingConfig,
    track_refusal,
)
from skindeep.finetune.train import (
    finetune,
    merge_adapter,
    save_adapter,
    unload,
)

__all__ = [
    "DEFAULT_ORGANISM_N",
    "SPEC_NS",
    "SPEC_SEEDS",
    "FinetuneConfig",
    "Measurement",
    "Pair",
    "PairSet",
    "RetentionCell",
    "RetentionConfig",
    "RetentionResult",
    "RetentionRow",
    "Start",
    "TrackedSeed",
    "Tracker",
    "TrackingConfig",
    "check_in_vocabulary",
    "filter_refusals",
    "finetune",
    "identity_shift",
    "load_pairs",
    "measure",
    "merge_adapter",
    "organism_heldout",
    "organism_pairs",
    "retention_ratio",
    "run_retention",
    "save_adapter",
    "summarise",
    "track_refusal",
    "unload",
]
