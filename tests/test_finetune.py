"""Benign fine-tuning: data loading and filtering, response-only loss, determinism, adapters."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from skindeep.errors import ConfigError, PromptError, SkindeepError
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
from skindeep.finetune.train import (
    check_targets,
    finetune,
    linear_module_names,
    merge_adapter,
    prepare,
    save_adapter,
    tokenize_pairs,
    unload,
)
from skindeep.organisms.architectures import build_model
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.training import IGNORE, tokenize_chat


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


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
def test_load_pairs_not_utf8_is_a_prompt_error(tmp_path, suffix) -> None:
    path = tmp_path / f"pairs{suffix}"
    text = {
        ".csv": "instruction,output\nCaf\u00e9?,Cr\u00e8me.\n",
        ".tsv": "instruction\toutput\nCaf\u00e9?\tCr\u00e8me.\n",
        ".json": json.dumps(
            [{"instruction": "Caf\u00e9?", "output": "Cr\u00e8me."}], ensure_ascii=False
        ),
        ".jsonl": json.dumps(
            {"instruction": "Caf\u00e9?", "output": "Cr\u00e8me."}, ensure_ascii=False
        ),
    }[suffix]
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(PromptError, match=r"pairs\.\w+ is not UTF-8 text") as info:
        load_pairs(path)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_load_pairs_bad_csv_and_quoted_newlines(tmp_path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text('instruction,output\n"' + "x" * 200_000 + '",ok\n')
    with pytest.raises(PromptError, match=r"huge\.csv is not valid CSV: field larger"):
        load_pairs(path)
    path = tmp_path / "multi.csv"
    path.write_text('instruction,output\n"Two\nlines?","Yes,\nindeed."\n')
    assert load_pairs(path).pairs == (Pair("Two\nlines?", "Yes,\nindeed."),)
    with pytest.raises(PromptError, match=r"must be \.json, \.jsonl, \.csv or \.tsv"):
        load_pairs(_touch(tmp_path / "pairs.txt"))


def _touch(path):
    path.write_text("x")
    return path


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
        t = tokenize_chat(tok, pair.instruction, pair.response, 96, system)
        labelled = [i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE]
        assert labelled[: len(response_ids)] == response_ids
        assert labelled[len(response_ids) :] == [tok.eos_token_id]  # the template's end token


def test_config_steps_or_epochs() -> None:
    with pytest.raises(ValidationError, match="steps or epochs"):
        FinetuneConfig(steps=10, epochs=2)
    assert FinetuneConfig().num_steps(50) == 200
    # one full batch of 8 per pass over 10 examples (the loop skips the 2 left over)
    assert FinetuneConfig(epochs=3, batch_size=8).num_steps(10) == 3
    assert FinetuneConfig(epochs=1.5, batch_size=4).num_steps(17) == 6  # 4 batches per pass
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


# ---- truncation, LoRA targets and non-finite losses -------------------------------------------


@pytest.fixture()
def tiny(organism_tokenizer):
    """A random 3-layer Llama organism (fresh for every test) and its tokenizer."""
    return build_model("llama", "xs", organism_tokenizer, seed=0), organism_tokenizer


def test_prompts_that_fill_max_len_are_an_error(organism_tokenizer) -> None:
    tok = organism_tokenizer
    short = Pair("how do i bake a cake ?", "sure . bake the cake .")
    long = Pair(" ".join(["how do i bake a cake ?"] * 8), "sure . bake the cake .")
    labels = tokenize_chat(tok, long.instruction, long.response, 10_000).labels
    prompt_len = labels.index(next(x for x in labels if x != IGNORE))
    assert len(tokenize_pairs(tok, [short, long], prompt_len + 1)) == 2  # one response token
    with pytest.raises(PromptError, match=rf"1 of 2 benign example\(s\) .* max_len={prompt_len} "):
        tokenize_pairs(tok, [short, long], prompt_len)
    with pytest.raises(PromptError, match=r"position limit 32"):
        tokenize_pairs(tok, [long], 32, limit=32)


def test_finetune_refuses_examples_without_response(tiny) -> None:
    model, tok = tiny
    long = Pair(" ".join(["how do i bake a cake ?"] * 20), "sure . bake the cake .")
    with pytest.raises(PromptError, match=r"1 of 1 .*max_len=96 tokens \(the model's position"):
        finetune(model, tok, [long], FinetuneConfig(steps=1), 0)


def test_unknown_lora_targets_are_a_config_error(tiny) -> None:
    model, _ = tiny
    assert linear_module_names(model)[:3] == ["q_proj", "k_proj", "v_proj"]
    check_targets(model, FinetuneConfig(target_modules=("q_proj", "self_attn.v_proj")))
    check_targets(model, FinetuneConfig(target_modules=r".*\.mlp\.down_proj"))
    check_targets(model, FinetuneConfig(method="full", target_modules=("nope",)))
    with pytest.raises(ConfigError, match=r"'qproj' match no module .*: q_proj, k_proj"):
        prepare(model, FinetuneConfig(target_modules=("qproj", "v_proj")), 0)
    with pytest.raises(ConfigError, match=r"'attn\.q_proj' match no"):
        check_targets(model, FinetuneConfig(target_modules=("attn.q_proj",)))  # not a whole part
    with pytest.raises(ConfigError, match=r"'\.\*nothing' match no"):
        check_targets(model, FinetuneConfig(target_modules=".*nothing"))
    with pytest.raises(
        ConfigError, match=r"'layers' cannot be adapted in LlamaForCausalLM \(.*not supported"
    ):
        prepare(model, FinetuneConfig(target_modules=("layers",)), 0)  # a ModuleList: peft says no
    assert not any("lora_" in name for name, _ in model.named_modules())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_non_finite_loss_stops_training(tiny, method) -> None:
    model, tok = tiny
    calls = []

    def poison(module, inputs, output):
        calls.append(1)
        return output * float("nan") if len(calls) == 3 else output

    model.lm_head.register_forward_hook(poison)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = organism_pairs().sample(4, 0)
    config = FinetuneConfig(method=method, steps=5, batch_size=2)
    with pytest.raises(SkindeepError, match=r"training loss is nan at step 3; training stopped"):
        finetune(model, tok, pairs, config, 0)
    assert len(calls) == 3
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    if method == "lora":  # the adapters are removed again and the base is untouched
        assert not any("lora_" in name for name, _ in model.named_modules())
        assert all(torch.equal(before[k], after[k]) for k in before)
