"""Refusal tracked during fine-tuning: checkpoints do not change training, the curve is right."""

from __future__ import annotations

import numpy as np
import pytest

from skindeep.evaluation.logits import refusal_score, refusal_tokens
from skindeep.finetune.config import FinetuneConfig, RetentionConfig
from skindeep.finetune.data import organism_heldout, organism_pairs
from skindeep.finetune.retention import run_retention
from skindeep.finetune.tracking import TrackingConfig, track_refusal
from skindeep.finetune.train import merge_adapter
from skindeep.models import load_model
from skindeep.models.adapter import format_user_turn

RECIPE = FinetuneConfig(steps=12, batch_size=8)


@pytest.fixture(scope="module")
def tracked(micro_zoo, tmp_path_factory):
    """Two seeds of a short recipe tracked on the micro zoo's last-block SFT organism."""
    organism = micro_zoo["micro-llama-sft-last1"]
    harmful = organism_heldout(True, 12)
    config = TrackingConfig(finetune=RECIPE, n=16, seeds=(0, 1), every=5, max_new_tokens=12)
    folder = tmp_path_factory.mktemp("track")
    calls = []

    def load():
        calls.append(1)
        lm = load_model(organism.path)
        return lm.model, lm.tokenizer

    start, runs = track_refusal(load, organism_pairs(), list(harmful), config, folder)
    return organism, harmful, config, folder, start, runs, calls


def test_checkpoints_are_evenly_spaced_and_end_at_the_last_step():
    config = TrackingConfig(finetune=FinetuneConfig(steps=200), every=10)
    assert config.checkpoints() == list(range(0, 201, 10))
    odd = TrackingConfig(finetune=FinetuneConfig(steps=12), every=5)
    assert odd.checkpoints() == [0, 5, 10, 12]


def test_end_refusal_equals_an_untracked_retention_run(tracked, tmp_path):
    organism, harmful, _, _, start, runs, _ = tracked
    retention = run_retention(
        organism.path, organism_pairs(), harmful, None,
        RetentionConfig(ns=(16,), seeds=(0, 1), finetune=RECIPE, max_new_tokens=12,
                        save_adapters=True),
        root=tmp_path,
    )  # fmt: skip
    assert start.refusal == retention.before.harmful
    for run in runs:
        cell = retention.cell(16, run.seed)
        assert run.refusal_end == cell.after.harmful
        assert run.loss_last == pytest.approx(cell.train["loss_last"], abs=0)
        # the last checkpoint's score is that of the saved adapter merged into a fresh model
        lm = load_model(organism.path)
        merged = merge_adapter(lm.model, cell.adapter)
        texts = [format_user_turn(lm.tokenizer, p) for p in harmful]
        ref = refusal_score(merged, lm.tokenizer, texts, refusal_tokens(lm.tokenizer))
        assert run.steps == [0, 5, 10, 12]
        assert run.score[-1] == pytest.approx(float(ref.mean()), abs=1e-4)
    # step 0 is the aligned model itself, for every seed
    assert runs[0].score[0] == pytest.approx(float(np.mean(start.scores)), abs=1e-9)
    assert runs[1].score[0] == runs[0].score[0]
    assert runs[0].score != runs[1].score  # seeds differ


def test_finished_seeds_are_read_back_without_loading(tracked):
    _, harmful, config, folder, start, runs, calls = tracked
    assert len(calls) == 1

    def fail():
        raise AssertionError("the model was loaded although every seed is cached")

    again = track_refusal(fail, organism_pairs(), list(harmful), config, folder)
    assert again == (start, runs)


def test_probability_curve_is_the_mean_sigmoid(tracked):
    _, _, _, _, start, runs, _ = tracked
    assert start.prob == pytest.approx(float(np.mean(1 / (1 + np.exp(-np.array(start.scores))))))
    for run in runs:
        assert len(run.prob) == len(run.score) == len(run.steps)
        assert run.prob[0] == start.prob and all(0 <= p <= 1 for p in run.prob)
