"""Arditi et al. (2024)'s refusal-direction selection: candidates, vectorised scoring, filters.

`select_direction` is the entry point; `SelectionOptions` holds its filters (the paper's
defaults) and `DirectionSelection` every candidate's scores and the chosen direction. Names
load lazily (the options import without torch).
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    "mean_differences": ".candidates",
    **dict.fromkeys(
        ["REASONS", "SelectionError", "SelectionOptions", "filter_reasons", "steering_cutoff"],
        ".options",
    ),
    **dict.fromkeys(["Candidate", "DirectionSelection"], ".result"),
    **dict.fromkeys(["Plan", "plan_scores", "row_interventions"], ".scoring"),
    "select_direction": ".select",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
