"""From a model pair to scores: the audit config, pipeline glue and its result objects."""

from skindeep.scores.audit import (
    PairMismatchError,
    PairStores,
    audit_pair,
    check_compatible,
    collect_pair,
    model_info,
)
from skindeep.scores.config import AuditConfig
from skindeep.scores.pair import AlphaChoice, PairGeometry, pair_geometry
from skindeep.scores.result import AuditResult, ModelInfo, PromptInfo

__all__ = [
    "AlphaChoice",
    "AuditConfig",
    "AuditResult",
    "ModelInfo",
    "PairGeometry",
    "PairMismatchError",
    "PairStores",
    "PromptInfo",
    "audit_pair",
    "check_compatible",
    "collect_pair",
    "model_info",
    "pair_geometry",
]
