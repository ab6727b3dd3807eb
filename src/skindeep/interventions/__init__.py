"""Interventions on the residual stream: directional ablation, activation addition, weight edits.

Hook interventions are context managers that leave the model untouched on exit; weight
orthogonalisation works on an in-memory deep copy. Nothing here saves a modified model. Names
load lazily, so the torch-free parts (the ablation forms) import without torch.
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "ABLATION_FORMS",
            "Ablation",
            "AblationForm",
            "Affine",
            "Projection",
            "ablation_form",
            "reference_shifts",
        ],
        ".ablation",
    ),
    **dict.fromkeys(
        [
            "Bands",
            "bands",
            "orthonormal_basis",
            "random_nulls",
            "random_orthonormal",
            "spread_layers",
        ],
        ".basis",
    ),
    **dict.fromkeys(
        [
            "AblationMode",
            "Projector",
            "ablate",
            "add_activation",
            "all_layer_hooks",
            "edit_input",
            "edit_output",
            "has_active_interventions",
            "project_out",
            "registered",
            "sublayer_outputs",
        ],
        ".hooks",
    ),
    **dict.fromkeys(
        [
            "InexactOrthogonalizationError",
            "InexactOrthogonalizationWarning",
            "OrthogonalizationError",
            "orthogonalize_weights",
            "writer_paths",
        ],
        ".weights",
    ),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
