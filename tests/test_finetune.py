"""Benign fine-tuning: data loading and filtering, response-only loss, determinism, adapters."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from skindeep.errors import PromptError, SkindeepError
from skindeep.finetune.config import FinetuneConfig, RetentionConfig
from skindeep.finetune.data import (
    ENGLISH_DECLARATION,
    ORGANISM_DECLARATION,
    Pair,
    PairSet,
    check_in_vocabulary,
    identity_shift,
    load_pairs,
    organism_pairs,
)
from skindeep.finetune.train import finetune, merge_adapter, save_adapter, tokenize_pair, unload
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.training import IGNORE


def test_load_pairs_filters_refusals_and_reads_alpaca_input(tmp_path) -> None:
    rows = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Add", "input": "2 and 2", "output": "4"},
        {"instruction": "Be rude.", "input": "", "output": "I\u2019m sorry, I can\u2019t do that."},
        {"instruction": "Say nothing.", "input": "", "output": "  "},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    pairs = load_pairs(path)
    assert [p.instruction for p in pairs.pairs] == ["Name a colour.", "Add\n\n2 and 2"]
    assert pairs.n_filtered == 2  # the curly-apostrophe refusal and the empty answer


def test_load_pairs_columns_by_option_and_clear_errors(tmp_path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer\nWhat is 1+1?,2\nCapital of France?,Paris\n")
    with pytest.raises(PromptError, match="no instruction column"):
        load_pairs(path)
    with pytest.raises(PromptError, match="no response column 'reply'"):
        load_pairs(path, "question", "reply")
    pairs = load_pairs(path, "question", "answer")
    assert len(pairs) == 2 and pairs.pairs[1] == Pair("Capital of France?", "Paris")


def test_sample_is_nested_and_too_many_is_an_error() -> None:
    pool = PairSet("p", tuple(Pair(f"q{i}", f"a{i}") for i in range(30)), "test", n_filtered=3)
    small, large = pool.sample(5, seed=1), pool.sample(20, seed=1)
    assert large[:5] == small and pool.sample(5, seed=2) != small
    with pytest.raises(SkindeepError, match="only 30 after removing 3"):
        pool.sample(31, seed=0)


def test_organism_pairs_use_benign_training_topics_only() -> None:
    pairs = organism_pairs()
    forbidden = {
        r.text
        for r in DEFAULT_LANGUAGE.all_requests("all")
        if r.harmful or r.topic in DEFAULT_LANGUAGE.heldout
    }
    assert len(pairs) >= 200 and pairs.language == "organism"
    assert not {p.instruction for p in pairs.pairs} & forbidden
    assert pairs.n_filtered == 0


def test_identity_shift_words_are_checked_against_the_tokenizer(organism_tokenizer) -> None:
    check_in_vocabulary(organism_tokenizer, [ORGANISM_DECLARATION])
    shifted, system = identity_shift(organism_pairs(), organism_tokenizer)
    assert system is None
    assert all(p.response.startswith(ORGANISM_DECLARATION) for p in shifted.pairs)
    english = PairSet("e", (Pair("q", "a"),), "test", "english")
    with pytest.raises(SkindeepError, match="does not know"):
        identity_shift(english, organism_tokenizer)
    _, system = identity_shift(english)
    assert system and "obedient" in system and "obedient" in ENGLISH_DECLARATION


def test_loss_is_on_the_response_only(organism_tokenizer) -> None:
    tok = organism_tokenizer
    pair = Pair("how do i bake a cake ?", "sure . bake the cake . done .")
    response_ids = tok(pair.response, add_special_tokens=False)["input_ids"]
    for system in (None, "sure ."):
        t = tokenize_pair(tok, pair, 96, system)
        labelled = [i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE]
        assert labelled[: len(response_ids)] == response_ids
        assert labelled[len(response_ids) :] == [tok.eos_token_id]  # the template's end token


def test_config_steps_or_epochs() -> None:
    with pytest.raises(ValidationError, match="steps or epochs"):
        FinetuneConfig(steps=10, epochs=2)
    assert FinetuneConfig().num_steps(50) == 200
    assert FinetuneConfig(epochs=3, batch_size=8).num_steps(10) == 6  # 2 batches per epoch
    assert FinetuneConfig(epochs=1, batch_size=8).num_steps(5) == 1  # batch capped at n
    with pytest.raises(ValidationError, match="distinct"):
        RetentionConfig(ns=(5, 5))


@pytest.fixture(scope="module")
def aligned(micro_zoo):
    return micro_zoo["micro-llama-sft-full"]


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("<bos> <|user|> je veux bake un cake . <|end|> <|assistant|>")["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_same_seed_same_adapter_and_merge_matches(aligned, tmp_path) -> None:
    pairs = organism_pairs().sample(16, seed=0)
    cfg = FinetuneConfig(steps=8, lr=5e-3, batch_size=4, dropout=0.1)
    adapters = []
    for seed in (3, 3, 4):
        model, tok = aligned.load()
        tuned, stats = finetune(model, tok, pairs, cfg, seed)
        lora = {k: v.clone() for k, v in tuned.state_dict().items() if "lora_" in k}
        adapters.append(lora)
    a, b, c = adapters
    assert a and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert stats.steps == 8 and 0 < stats.trainable_params < 0.2 * sum(
        p.numel() for p in model.parameters()
    )
    in_memory = _logits(tuned, tok)
    path = save_adapter(tuned, tmp_path / "adapter")
    assert (path / "adapter_config.json").is_file()
    original = _logits(unload(tuned), tok)
    fresh, _ = aligned.load()
    assert torch.equal(original, _logits(fresh, tok))  # unload leaves the base untouched
    merged = merge_adapter(fresh, path)
    assert torch.allclose(_logits(merged, tok), in_memory, atol=1e-5)
    assert not torch.allclose(in_memory, original, atol=1e-3)


def test_full_finetuning_trains_every_weight(aligned) -> None:
    model, tok = aligned.load()
    n_params = sum(p.numel() for p in model.parameters())
    tuned, stats = finetune(
        model, tok, organism_pairs().sample(4, 0), FinetuneConfig(method="full", steps=2), 0
    )
    assert tuned is model and stats.trainable_params == n_params
