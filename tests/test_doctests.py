"""The public API's doctested examples, run on the micro zoo (the notebook usage, checked)."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Modules whose docstring examples document the public API.
MODULES = (
    "skindeep",
    "skindeep.artifacts",
    "skindeep.runtime",
    "skindeep.interventions.ablation",
    "skindeep.evaluation.logits",
    "skindeep.evaluation.options",
    "skindeep.evaluation.rates",
    "skindeep.evaluation.measure",
    "skindeep.selection.options",
    "skindeep.selection.select",
    "skindeep.dose.options",
    "skindeep.dose.bases",
    "skindeep.dose.runner",
    "skindeep.dose.experiment",
)


@pytest.fixture(scope="module")
def namespace(micro_zoo) -> dict[str, object]:
    """What the examples may use: the micro organisms (loaded) and the prompt helpers."""
    import numpy as np

    import skindeep

    return {
        "np": np,
        "micro_dpo": skindeep.load_model(micro_zoo["micro-llama-dpo"].path),
        "micro_base": skindeep.load_model(micro_zoo["micro-llama"].path),
        "organism_prompts": skindeep.organism_prompts,
        **{name: getattr(skindeep, name) for name in skindeep.__all__},
    }


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str, namespace: dict[str, object]) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, extraglobs=namespace, optionflags=flags, verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
