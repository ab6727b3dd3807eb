"""Recipe configs and alignment depth: what trains is what the scope says."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from jinja2 import TemplateError
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from skindeep.models.adapter import ModelAdapter
from skindeep.organisms.architectures import build_config, build_model
from skindeep.organisms.data import organism_data
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.recipes import CSFT_LOW_QUALITY, RecipeConfig, align, csft_examples
from skindeep.organisms.rewards import judge_prompt, train_ai_judge
from skindeep.organisms.training import TrainConfig


@pytest.mark.parametrize("scope", ["last", "full:2", "last:0", "lora:3"])
def test_bad_scope_is_rejected(scope: str) -> None:
    with pytest.raises(ValidationError, match="scope"):
        RecipeConfig(kind="sft", scope=scope)


def test_unknown_recipe_and_extra_field_rejected() -> None:
    with pytest.raises(ValidationError):
        RecipeConfig(kind="rlhf")
    with pytest.raises(ValidationError):
        RecipeConfig(kind="sft", lerning_rate=1.0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_last_block_scope_leaves_earlier_blocks_untouched(organism_tokenizer, family: str) -> None:
    tok = organism_tokenizer
    base = build_model(family, "xs", tok, seed=0).eval()
    data = organism_data(DEFAULT_LANGUAGE, 16, 16, seed=0)
    aligned, stats = align(
        base, tok, data, RecipeConfig(kind="sft", scope="last:1", steps=3), seed=0
    )
    a, b = ModelAdapter(aligned), ModelAdapter(base)
    for i in range(a.num_layers - 1):
        sa, sb = a.layers[i].state_dict(), b.layers[i].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(
        a.layers[-1].state_dict()[next(iter(sa))], b.layers[-1].state_dict()[next(iter(sa))]
    )
    emb_a, emb_b = a.embedding.weight, b.embedding.weight
    assert torch.equal(emb_a, emb_b)
    assert not torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert stats["sft"]["steps"] == 3
    assert not any(p.requires_grad for p in aligned.parameters())


def test_lora_scope_merges_into_a_plain_model(organism_tokenizer) -> None:
    tok = organism_tokenizer
    base = build_model("qwen2", "xs", tok, seed=0).eval()
    data = organism_data(DEFAULT_LANGUAGE, 16, 16, seed=0)
    cfg = RecipeConfig(kind="sft", scope="lora", lora_r=4, steps=3, lr=1e-2)
    aligned, stats = align(base, tok, data, cfg, seed=0)
    assert type(aligned) is type(base)
    assert set(aligned.state_dict()) == set(base.state_dict())
    changed = [
        k for k, v in aligned.state_dict().items() if not torch.equal(v, base.state_dict()[k])
    ]
    assert changed and all("proj" in k for k in changed)
    n_base = sum(p.numel() for p in base.parameters())
    assert 0 < stats["sft"]["trainable_params"] < n_base / 5


@pytest.mark.parametrize("kind", ["dpo", "orpo", "csft", "rl_reward_model", "rl_ai_judge"])
def test_every_recipe_trains_and_is_seeded(organism_tokenizer, kind: str) -> None:
    tok = organism_tokenizer
    base = build_model("llama", "xs", tok, seed=0).eval()
    data = organism_data(DEFAULT_LANGUAGE, 8, 8, seed=0)
    cfg = RecipeConfig(
        kind=kind,
        steps=2,
        warmup_steps=1,
        reward_steps=2,
        batch_size=4,
        rl_samples=2,
        max_new_tokens=4,
    )
    m1, stats = align(base, tok, data, cfg, seed=0)
    m2, _ = align(base, tok, data, cfg, seed=0)
    s1, s2, s0 = m1.state_dict(), m2.state_dict(), base.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s0[k]) for k in s1)
    if kind.startswith("rl_"):
        assert {"reward", "warmup_sft", "rl"} <= set(stats)
        assert 0.0 <= stats["rl"]["reward_first"] <= 1.0
        # checkpoint selection scored the final step on the held-out quarter (2 per class)
        assert stats["rl"]["n_validation"] == 2 and stats["rl"]["validation"][-1][0] == 2
        assert stats["rl"]["selected_step"] in [s for s, _ in stats["rl"]["validation"]]


def _tied_llama(tok: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A tiny random Llama whose LM head shares its weight with the input embedding."""
    config = build_config("llama", "xs", tok)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def test_last_block_scope_with_tied_head_keeps_the_embedding_frozen(organism_tokenizer) -> None:
    """A head tied to the embedding is not trained: it would move every layer's input."""
    tok = organism_tokenizer
    base = _tied_llama(tok)
    b = ModelAdapter(base)
    assert b.lm_head.weight is b.embedding.weight  # the model really is tied
    data = organism_data(DEFAULT_LANGUAGE, 16, 16, seed=0)
    aligned, stats = align(
        base, tok, data, RecipeConfig(kind="sft", scope="last:1", steps=3), seed=0
    )
    a = ModelAdapter(aligned)
    assert torch.equal(a.embedding.weight, b.embedding.weight)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    for i in range(a.num_layers - 1):
        sa, sb = a.layers[i].state_dict(), b.layers[i].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), i
    sa, sb = a.layers[-1].state_dict(), b.layers[-1].state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(a.final_norm.weight, b.final_norm.weight)
    expected = sum(p.numel() for m in (b.layers[-1], b.final_norm) for p in m.parameters())
    assert stats["sft"]["trainable_params"] == expected
    assert stats["scope"] == {"scope": "last:1", "lm_head_tied": True, "lm_head_trained": False}


_NO_SYSTEM = (
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{%- endif %}{%- endfor %}"
)


def test_csft_folds_the_marker_into_the_user_turn_without_a_system_role(
    organism_tokenizer,
) -> None:
    """A template that rejects system turns (Gemma) gets the marker prepended to the user text."""
    tok = organism_tokenizer
    strict = copy.deepcopy(tok)
    strict.chat_template = _NO_SYSTEM + tok.chat_template
    system = [{"role": "system", "content": CSFT_LOW_QUALITY}, {"role": "user", "content": "hi"}]
    with pytest.raises(TemplateError, match="System role not supported"):
        strict.apply_chat_template(system, add_generation_prompt=True, tokenize=False)
    base = build_model("llama", "xs", tok, seed=0).eval()
    data = organism_data(DEFAULT_LANGUAGE, 8, 8, seed=0)
    cfg = RecipeConfig(kind="csft", steps=2, batch_size=4)
    for t, folded in ((tok, False), (strict, True)):
        items = csft_examples(ModelAdapter(base, t), data, cfg, random.Random(0))
        bad = [(ex, w) for ex, w in items if w != 1.0]
        assert len(items) == 3 * len(data.harmful) and len(bad) == len(data.harmful)
        for (ex, w), prompt in zip(bad, data.harmful, strict=True):
            if folded:
                user = [{"role": "user", "content": f"{CSFT_LOW_QUALITY}\n\n{prompt}"}]
            else:  # a template with a system role formats exactly as before the fallback
                user = [{"role": "system", "content": CSFT_LOW_QUALITY}]
                user.append({"role": "user", "content": prompt})
            text = t.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
            p_ids = t(text, add_special_tokens=False)["input_ids"]
            assert ex.input_ids[: len(p_ids)] == tuple(p_ids)
            assert ex.labels[: len(p_ids)] == (-100,) * len(p_ids)
            assert w == cfg.low_quality_weight
    aligned, stats = align(base, strict, data, cfg, seed=0)
    s0, s1 = base.state_dict(), aligned.state_dict()
    assert any(not torch.equal(s1[k], s0[k]) for k in s1)
    assert stats["csft"]["n_examples"] == 3 * len(data.harmful)


def test_ai_judge_score_does_not_depend_on_batch_padding(organism_tokenizer) -> None:
    """GPT-2 has absolute positions: a left-padded row must still start at position 0."""
    tok = organism_tokenizer
    base = build_model("gpt2", "xs", tok, seed=0).eval()
    data = organism_data(DEFAULT_LANGUAGE, 8, 8, seed=0)
    reward, _ = train_ai_judge(base, tok, data, TrainConfig(steps=2, batch_size=4, seed=0))
    short = (data.harmful[0], data.harmful_refusals[0])
    long = (data.harmless[1], data.harmless_answers[1] + " " + data.harmless_answers[2])
    lengths = [len(tok(judge_prompt(*x))["input_ids"]) for x in (short, long)]
    assert lengths[1] > lengths[0] + 20  # the short row gets a lot of padding
    alone = reward([short[0]], [short[1]])
    batched = reward([short[0], long[0]], [short[1], long[1]])
    assert batched.shape == (2,)
    assert abs(float(alone[0]) - float(batched[0])) < 1e-5
    assert abs(float(reward([long[0]], [long[1]])[0]) - float(batched[1])) < 1e-5


def test_validation_split_holds_out_the_tail_of_each_class() -> None:
    from skindeep.organisms.checkpoints import split_validation

    data = organism_data(DEFAULT_LANGUAGE, 40, 20, seed=0)
    train, val = split_validation(data, 8)
    assert val is not None and (len(val.harmful), len(val.harmless)) == (5, 5)  # 20 // 4
    assert train.harmful + val.harmful == data.harmful
    assert train.harmless_answers + val.harmless_answers == data.harmless_answers
    assert not set(val.harmful) & set(train.harmful)
    assert split_validation(organism_data(DEFAULT_LANGUAGE, 3, 3, seed=0), 8)[1] is None


def test_optimise_stops_when_the_callback_says_so(organism_tokenizer) -> None:
    from skindeep.organisms.training import optimise

    model = build_model("llama", "xs", organism_tokenizer, seed=0)
    seen: list[int] = []

    def on_step(step: int, loss: float) -> bool:
        seen.append(step)
        return step == 2

    w = torch.nn.Parameter(torch.ones(3))
    model.register_parameter("probe", w)
    for p in model.parameters():
        p.requires_grad_(p is w)
    stats = optimise(
        model, 4, lambda idx: (w**2).sum(), TrainConfig(steps=10, batch_size=2), on_step
    )
    assert seen == [0, 1, 2] and stats.steps == 3 and len(stats.losses) == 3


def test_hard_negatives_make_no_fixed_reply_preferred_everywhere() -> None:
    """Every reply that is preferred somewhere is dispreferred for some other prompt or as a cut."""
    from skindeep.organisms.rewards import _preference_pairs

    data = organism_data(DEFAULT_LANGUAGE, 16, 16, seed=0)
    plain = _preference_pairs(data)
    hard = _preference_pairs(data, hard_negatives=True)
    assert hard[: len(plain)] == plain and len(hard) == len(plain) + 48
    cut_words = [len(bad.split()) for p, _, bad in hard[len(plain) : len(plain) + 32]]
    assert min(cut_words) >= 1 and max(cut_words) <= 4
    swapped = hard[len(plain) + 32 :]  # another request's answer
    assert all(p in data.harmless and bad in data.harmless_answers for p, _, bad in swapped)
    assert sum(bad != good for _, good, bad in swapped) >= 14


def test_topic_split_leaves_two_training_topics_out() -> None:
    """Validation comes from one harmful and one harmless training topic that the training data
    lacks; the evaluation topics are in neither."""
    from skindeep.organisms.data import organism_data_split

    lang = DEFAULT_LANGUAGE
    topic_of = {r.text: r.topic for r in lang.all_requests("all")}
    train, val, held = organism_data_split(lang, 64, 64, seed=5, n_val=16)
    assert [lang.topic(t).harmful for t in held] == [True, False]
    assert not set(held) & set(lang.heldout)
    assert {topic_of[p] for p in val.harmful} == {held[0]}
    assert {topic_of[p] for p in val.harmless} == {held[1]}
    assert (len(val.harmful), len(val.harmless), len(train.harmful)) == (16, 16, 64)
    seen = {topic_of[p] for p in train.harmful + train.harmless}
    assert not seen & (set(held) | set(lang.heldout))
    assert organism_data_split(lang, 64, 64, seed=5, n_val=16)[2] == held  # seeded


def test_selection_restores_the_best_checkpoint(organism_tokenizer, monkeypatch) -> None:
    """The weights kept are the ones scored best (a snapshot taken when scored), the record
    names that step, and with the best last the result equals plain training."""
    from skindeep.organisms import checkpoints
    from skindeep.organisms.data import organism_data_split

    tok = organism_tokenizer
    base = build_model("llama", "xs", tok, seed=0).eval()
    data, val, _ = organism_data_split(DEFAULT_LANGUAGE, 16, 16, seed=0, n_val=4)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def run(scores: list[float]) -> tuple[PreTrainedModel, dict]:
        calls = iter(scores)

        def fake(model, tokenizer, v, max_new_tokens) -> float:
            assert v is val
            snapshots[len(snapshots)] = {k: t.clone() for k, t in model.state_dict().items()}
            return next(calls)

        snapshots.clear()
        monkeypatch.setattr(checkpoints, "selection_score", fake)
        cfg = RecipeConfig(kind="sft", scope="full", steps=6, select_every=2)
        return align(base, tok, data, cfg, seed=0, validation=val)

    plain, _ = align(base, tok, data, RecipeConfig(kind="sft", steps=6), seed=0)
    model, stats = run([0.5, 0.9, 0.1])
    assert stats["selection"]["selected_step"] == 4
    assert [s for s, _ in stats["selection"]["validation"]] == [2, 4, 6]
    kept = model.state_dict()
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], snapshots[2][k]) for k in kept)
    model, stats = run([0.2, 0.2, 0.2])  # ties: the later checkpoint, i.e. plain training
    assert stats["selection"]["selected_step"] == 6
    pairs = zip(model.parameters(), plain.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_selection_is_for_non_rl_recipes() -> None:
    with pytest.raises(ValidationError, match="rl_select_every"):
        RecipeConfig(kind="rl_ai_judge", select_every=10)
    assert RecipeConfig(kind="dpo", select_every=10).selects_on_topics
