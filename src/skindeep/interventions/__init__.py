"""Interventions on the residual stream: directional ablation, activation addition, weight edits.

Hook interventions are context managers that leave the model untouched on exit; weight
orthogonalisation works on an in-memory deep copy. Nothing here saves a modified model.
"""

from skindeep.interventions.basis import (
    Bands,
    bands,
    orthonormal_basis,
    random_nulls,
    random_orthonormal,
    spread_layers,
)
from skindeep.interventions.hooks import (
    ablate,
    add_activation,
    has_active_interventions,
    project_out,
)
from skindeep.interventions.weights import (
    InexactOrthogonalizationError,
    InexactOrthogonalizationWarning,
    OrthogonalizationError,
    orthogonalize_weights,
    writer_paths,
)

__all__ = [
    "Bands",
    "InexactOrthogonalizationError",
    "InexactOrthogonalizationWarning",
    "OrthogonalizationError",
    "ablate",
    "add_activation",
    "bands",
    "has_active_interventions",
    "orthogonalize_weights",
    "orthonormal_basis",
    "project_out",
    "random_nulls",
    "random_orthonormal",
    "spread_layers",
    "writer_paths",
]
