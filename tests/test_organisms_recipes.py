"""Recipe configs and alignment depth: what trains is what the scope says."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from skindeep.models.adapter import ModelAdapter
from skindeep.organisms.architectures import build_model
from skindeep.organisms.data import organism_data
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.recipes import RecipeConfig, align


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
