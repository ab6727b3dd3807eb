"""scripts/align_smollm2.py's training logger keeps the recipe's own step callback working."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from skindeep.organisms import recipes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "align_smollm2.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("align_smollm2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_logger_chains_the_recipes_callback_and_its_stop(script, monkeypatch, capsys) -> None:
    calls = []

    def fake_train(model, data, config, pad_id, on_step=None):
        # what train_causal_lm does with on_step: call it each step, stop when it says True
        for step in range(5):
            if on_step is not None and on_step(step, 1.0 / (step + 1)):
                return step
        return None

    monkeypatch.setattr(recipes, "train_causal_lm", fake_train)
    with script.logged_training(every=2):
        # as recipes.align calls it: the selector passed positionally
        stopped = recipes.train_causal_lm("m", [], "cfg", 0, lambda s, _: calls.append(s) or s == 3)
        unchained = recipes.train_causal_lm("m", [], "cfg", 0)
    assert recipes.train_causal_lm is fake_train  # restored
    assert stopped == 3 and calls == [0, 1, 2, 3]
    assert unchained is None
    assert "step 2: loss 0.500" in capsys.readouterr().out
