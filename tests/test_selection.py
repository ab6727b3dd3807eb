"""Arditi's direction selection on a micro organism: vectorised scores, filters, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from safetensors.numpy import load_file

from skindeep.errors import PromptError
from skindeep.evaluation import kl_divergence, next_token_logprobs, refusal_score
from skindeep.interventions import Affine, ablate, add_activation
from skindeep.models import load_model
from skindeep.models.chat import format_prompts
from skindeep.prompts import organism_prompts
from skindeep.selection import SelectionError, SelectionOptions, select_direction

ORGANISM = "micro-llama-dpo"


@pytest.fixture(scope="module")
def loaded(micro_zoo):
    """The DPO micro organism, loaded once."""
    return load_model(micro_zoo[ORGANISM].path)


@pytest.fixture(scope="module")
def sets() -> dict[str, tuple[str, ...]]:
    """Disjoint train (24) and validation (12) prompts per class."""
    harmful = organism_prompts(True, "train", n=36, seed=3).prompts
    harmless = organism_prompts(False, "train", n=36, seed=3).prompts
    return {
        "harmful_train": harmful[:24],
        "harmless_train": harmless[:24],
        "harmful_val": harmful[24:],
        "harmless_val": harmless[24:],
    }


def run(loaded, sets, **options):
    """select_direction on the fixture sets with the given options."""
    opts = SelectionOptions(batch_size=5, candidates_per_pass=3, **options)
    return select_direction(loaded, **sets, options=opts)


def test_vectorised_scores_match_one_candidate_at_a_time(loaded, sets) -> None:
    """Tiled per-row hooks give the scores of `ablate` / `add_activation` run one by one."""
    sel = run(loaded, sets)
    m, tok, ad = loaded.model, loaded.tokenizer, loaded.adapter
    harmful = format_prompts(ad.tokenizer, sets["harmful_val"], "chat")
    harmless = format_prompts(ad.tokenizer, sets["harmless_val"], "chat")
    ids = sel.refusal_token_ids
    assert sel.baseline_harmful == pytest.approx(refusal_score(m, tok, harmful, ids).mean())
    logp = next_token_logprobs(m, tok, harmless)
    scored = [c for c in sel.candidates if c.norm > 0]
    assert len(scored) >= 2
    for c in scored:
        vector = sel.mean_diffs[sel.offsets.index(c.position), c.layer]
        with ablate(m, ad, vector):
            assert c.ablation_score == pytest.approx(
                refusal_score(m, tok, harmful, ids).mean(), abs=1e-5
            )
            kl = kl_divergence(logp, next_token_logprobs(m, tok, harmless)).mean()
            assert c.kl == pytest.approx(kl, abs=1e-5)
        with add_activation(m, ad, vector, c.layer):
            steer = refusal_score(m, tok, harmless, ids).mean()
        assert c.steering_score == pytest.approx(steer, abs=1e-5)


def test_affine_scores_match_ablate_with_the_harmless_reference(loaded, sets) -> None:
    """Affine selection scores each candidate as `ablate(ablation=Affine(harmless means at
    its position))` would; the chosen reference is those means, saved beside the direction."""
    sel = run(loaded, sets, ablation="affine", kl_threshold=math.inf)
    m, tok, ad = loaded.model, loaded.tokenizer, loaded.adapter
    harmful = format_prompts(ad.tokenizer, sets["harmful_val"], "chat")
    harmless = format_prompts(ad.tokenizer, sets["harmless_val"], "chat")
    logp = next_token_logprobs(m, tok, harmless)
    assert sel.harmless_means.shape == sel.mean_diffs.shape
    scored = [c for c in sel.candidates if c.norm > 0]
    for c in scored[:3]:
        p = sel.offsets.index(c.position)
        with ablate(m, ad, sel.mean_diffs[p, c.layer], ablation=Affine(sel.harmless_means[p])):
            score = refusal_score(m, tok, harmful, sel.refusal_token_ids).mean()
            kl = kl_divergence(logp, next_token_logprobs(m, tok, harmless)).mean()
        assert c.ablation_score == pytest.approx(score, abs=1e-5)
        assert c.kl == pytest.approx(kl, abs=1e-5)
    plain = run(loaded, sets, kl_threshold=math.inf)
    assert any(
        abs(a.ablation_score - b.ablation_score) > 1e-3
        for a, b in zip(plain.candidates, sel.candidates, strict=True)
        if a.norm > 0
    )
    assert np.array_equal(sel.reference, sel.harmless_means[sel.offsets.index(sel.best.position)])
    assert sel.to_json()["ablation"] == "affine"
    assert isinstance(sel.ablation, Affine) and np.array_equal(
        sel.ablation.reference, sel.reference
    )


def test_midpoint_steering_cutoff_sits_between_the_baselines(loaded, sets) -> None:
    """'midpoint' filters on the mean of the harmful and harmless baseline scores."""
    sel = run(loaded, sets, steering_threshold="midpoint", kl_threshold=math.inf)
    cutoff = 0.5 * (sel.baseline_harmful + sel.baseline_harmless)
    assert sel.to_json()["steering_cutoff"] == pytest.approx(cutoff)
    assert sel.baseline_harmless < cutoff < sel.baseline_harmful
    for c in sel.candidates:
        if c.norm > 0 and c.layer < 0.8 * loaded.adapter.num_layers:
            assert ("steering" in c.reasons) == (not c.steering_score > cutoff)
    with pytest.raises(ValidationError, match="midpoint"):  # rejected on construction
        SelectionOptions(steering_threshold="half")
    with pytest.raises(ValidationError, match="extra"):
        SelectionOptions(kl_treshold=0.2)


def test_filters_choice_and_files(loaded, sets, tmp_path) -> None:
    """Every candidate is kept with its reasons; the winner is the lowest passing score."""
    n_layers = loaded.adapter.num_layers
    sel = run(loaded, sets, kl_threshold=math.inf, steering_threshold=-math.inf)
    assert len(sel.candidates) == n_layers * len(sel.offsets) == n_layers * 2
    for c in sel.candidates:
        if c.norm == 0:  # block 0's input at a template token is the same embedding
            assert c.reasons == ("zero",) and c.layer == 0 and math.isnan(c.ablation_score)
        else:
            assert c.reasons == (() if c.layer < 0.8 * n_layers else ("layer",))
    passing = [c for c in sel.candidates if c.passed]
    assert sel.best == min(passing, key=lambda c: c.ablation_score)
    assert np.linalg.norm(sel.direction) == pytest.approx(1.0)
    assert sel.vector @ sel.direction == pytest.approx(sel.best.norm)

    strict = run(loaded, sets, max_layer_fraction=0.5)
    assert all("layer" in c.reasons for c in strict.candidates if c.layer >= 2 and c.norm > 0)

    path = sel.save(tmp_path)
    data = json.loads(path.read_text())
    assert data["chosen"]["layer"] == sel.best.layer and len(data["candidates"]) == 2 * n_layers
    zero = next(c for c in data["candidates"] if c["reasons"] == ["zero"])
    assert zero["ablation_score"] is None and zero["passed"] is False
    tensors = load_file(str(tmp_path / "direction.safetensors"))
    np.testing.assert_allclose(tensors["direction"], sel.direction, atol=1e-6)
    assert tensors["mean_diffs.pos-1"].shape == (n_layers, loaded.adapter.hidden_size)
    p = sel.offsets.index(sel.best.position)
    np.testing.assert_allclose(tensors["reference"], sel.harmless_means[p], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        tensors["harmless_means.pos-1"] + tensors["mean_diffs.pos-1"],
        sel.harmless_means[sel.offsets.index(-1)] + sel.mean_diffs[sel.offsets.index(-1)],
        rtol=1e-5,
        atol=1e-5,
    )


def test_no_survivor_and_bad_sets(loaded, sets, tmp_path) -> None:
    """No passing candidate: the result still has every score, `.best` raises clearly."""
    sel = run(loaded, sets, steering_threshold=math.inf)
    assert sel.chosen is None
    with pytest.raises(SelectionError, match="no candidate direction passed"):
        _ = sel.direction
    data = json.loads(sel.save(tmp_path).read_text())
    assert data["chosen"] is None and all(not c["passed"] for c in data["candidates"])
    leaky = dict(sets, harmful_val=(*sets["harmful_val"], sets["harmful_train"][0]))
    with pytest.raises(PromptError, match="also training prompts"):
        run(loaded, leaky)
