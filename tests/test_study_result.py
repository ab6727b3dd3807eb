"""study.json schema: validation, round trip, the included/excluded split, the primary row."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from conftest import synthetic_study
from skindeep.study.result import ModelEntry, StudyResult


def test_round_trip(tmp_path):
    result = synthetic_study()
    path = result.save(tmp_path / "study.json")
    again = StudyResult.load(path)
    assert again == result
    raw = json.loads(path.read_text())
    assert raw["stats"][0]["ci"] == [-1.0, -1.0]
    assert raw["models"][0]["fragility"]["auc"]["per_seed"] == {"0": 0.9, "1": 0.8}


def test_included_excluded_and_primary():
    result = synthetic_study()
    assert [m.name for m in result.included()] == ["llama-s-sft", "qwen-s-dpo", "gpt2-s-orpo"]
    assert [m.excluded for m in result.excluded()] == ["refuses 0.40 of harmful (< 0.80)"]
    assert result.primary() is not None and result.primary().rho == -1.0


def test_unknown_field_rejected():
    with pytest.raises(ValidationError, match="extra"):
        ModelEntry(name="x", recipe="sft", architecture="llama", colour="red")


def test_every_field_documented():
    from pydantic import BaseModel

    import skindeep.study.result as mod

    for obj in vars(mod).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            for name, field in obj.model_fields.items():
                assert field.description, f"{obj.__name__}.{name} has no docstring"
