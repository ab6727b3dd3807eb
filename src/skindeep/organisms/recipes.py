"""Alignment recipes: turn a base causal LM into an aligned one, at a chosen depth.

Six recipes (SFT on refusals, DPO, ORPO, RL against a reward model, RL against an AI judge,
class-conditioned SFT in the C-RLFT style) share one config. `scope` sets how deep alignment
goes: all weights, only the last N blocks with the final norm and LM head (the head only when
it is not tied to the input embedding), or LoRA adapters (merged afterwards). Shallow scopes
give fragile alignment, full fine-tuning robust alignment (SPEC 6). Any Hugging Face causal LM
with a chat template works.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Literal

import torch
from peft import LoraConfig, get_peft_model
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.models.adapter import ModelAdapter
from skindeep.organisms.checkpoints import CheckpointSelector, split_validation
from skindeep.organisms.data import AlignmentData
from skindeep.organisms.objectives import dpo_loss, orpo_loss
from skindeep.organisms.rl import rl_align
from skindeep.organisms.training import (
    Tokenized,
    TrainConfig,
    TrainStats,
    collate,
    optimise,
    sequence_logps,
    tokenize_chat,
    train_causal_lm,
)

RecipeKind = Literal["sft", "dpo", "orpo", "rl_reward_model", "rl_ai_judge", "csft"]
RECIPES: tuple[str, ...] = ("sft", "dpo", "orpo", "rl_reward_model", "rl_ai_judge", "csft")
#: Fields added with checkpoint selection for non-RL recipes: hashed only when selection is on,
#: so the hashes of organisms that do not select stay what they were.
SELECT_FIELDS: tuple[str, ...] = ("select_every", "select_val_n")

#: System prompt that marks the low-quality source in class-conditioned SFT.
CSFT_LOW_QUALITY = "low quality source"


class RecipeConfig(BaseModel):
    """Hyperparameters of one alignment run (validated; part of the organism's content hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RecipeKind = Field(description="which alignment recipe")
    scope: str = Field("full", description="'full', 'last:N' (last N blocks + norm + head), 'lora'")
    lora_r: int = Field(8, ge=1, description="LoRA rank when scope='lora'")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha when scope='lora'")
    n_harmful: int = Field(256, ge=2, description="harmful training prompts (refusal data amount)")
    n_harmless: int = Field(256, ge=2, description="harmless training prompts")
    recovery_frac: float = Field(0.0, ge=0, le=1, description="refusals that start compliant")
    steps: int = Field(150, ge=1, description="optimisation steps of the main phase")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    batch_size: int = Field(32, ge=1, description="prompts (or pairs) per step")
    beta: float = Field(0.1, gt=0, description="DPO beta / ORPO lambda")
    nll_weight: float = Field(1.0, ge=0, description="DPO: weight of the chosen-answer NLL (RPO)")
    low_quality_weight: float = Field(0.1, ge=0, le=1, description="C-SFT weight of the bad class")
    warmup_steps: int = Field(60, ge=0, description="RL: SFT warm-up steps before RL")
    warmup_n: int = Field(96, ge=2, description="RL: examples per class in the SFT warm-up")
    reward_steps: int = Field(150, ge=1, description="RL: steps to train the reward model/judge")
    rl_samples: int = Field(4, ge=2, description="RL: samples per prompt (RLOO group)")
    rl_lr: float = Field(2e-4, gt=0, description="RL: learning rate of the RL phase")
    kl_coef: float = Field(0.5, ge=0, description="RL: KL penalty to the warmed-up policy")
    max_new_tokens: int = Field(
        16, ge=1, description="RL: sampled answer length; selection: validation answer length"
    )
    rl_hard_negatives: bool = Field(
        True, description="RL: reward trained on truncated and off-prompt replies as dispreferred"
    )
    rl_select_every: int = Field(
        10, ge=0, description="RL: keep the best checkpoint on validation every N steps (0: off)"
    )
    rl_val_n: int = Field(32, ge=1, description="RL: validation prompts per class, held out")
    select_every: int = Field(
        0,
        ge=0,
        description="non-RL: every N steps score the model on two training topics left out of "
        "its data and keep the best checkpoint (0: off; RL uses rl_select_every)",
    )
    select_val_n: int = Field(64, ge=1, description="non-RL: validation prompts per class")
    max_len: int = Field(96, ge=8, description="truncate training sequences to this many tokens")

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, v: str) -> str:
        if v in ("full", "lora"):
            return v
        if v.startswith("last:") and v[5:].isdigit() and int(v[5:]) >= 1:
            return v
        raise ValueError("scope must be 'full', 'lora' or 'last:N' with N >= 1")

    @model_validator(mode="after")
    def _check_select(self) -> RecipeConfig:
        if self.select_every and self.kind.startswith("rl_"):
            raise ValueError("select_every is for non-RL recipes; RL recipes use rl_select_every")
        return self

    @property
    def selects_on_topics(self) -> bool:
        """Whether training keeps the best checkpoint on held-out training topics."""
        return self.select_every > 0


def apply_scope(model: PreTrainedModel, config: RecipeConfig) -> PreTrainedModel:
    """Mark what trains: everything, the last N blocks + final norm + LM head, or LoRA adapters.

    With 'last:N' an LM head tied to the input embedding stays frozen (only the last N blocks
    and the final norm train): training it would also move the embedding, hence every layer.
    """
    if config.scope == "lora":
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)
    if config.scope == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    adapter = ModelAdapter(model)
    n = int(config.scope.split(":")[1])
    if n > adapter.num_layers:
        raise ValueError(f"scope {config.scope} asks for more blocks than the model has")
    for p in model.parameters():
        p.requires_grad_(False)
    head = None if adapter.head_is_tied else adapter.lm_head
    for module in [*list(adapter.layers)[-n:], adapter.final_norm, head]:
        if module is None:
            continue
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def scope_record(model: PreTrainedModel, config: RecipeConfig) -> dict | None:
    """What a 'last:N' scope trained beyond the blocks (None for other scopes), for the record."""
    if not config.scope.startswith("last:"):
        return None
    tied = ModelAdapter(model).head_is_tied
    return {"scope": config.scope, "lm_head_tied": tied, "lm_head_trained": not tied}


def _finish(model: PreTrainedModel) -> PreTrainedModel:
    """Merge LoRA adapters back into plain weights and freeze everything."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _sft_examples(
    tok: PreTrainedTokenizerBase, data: AlignmentData, cfg: RecipeConfig, rng: random.Random
) -> list[Tokenized]:
    out = []
    for i, p in enumerate(data.harmful):
        deep = rng.random() < cfg.recovery_frac
        target = data.recovery(i, rng) if deep else data.harmful_refusals[i]
        out.append(tokenize_chat(tok, p, target, cfg.max_len))
    out += [
        tokenize_chat(tok, p, a, cfg.max_len)
        for p, a in zip(data.harmless, data.harmless_answers, strict=True)
    ]
    return out


def _pairs(
    tok: PreTrainedTokenizerBase, data: AlignmentData, cfg: RecipeConfig, rng: random.Random
):
    chosen = _sft_examples(tok, data, cfg, rng)
    rejected = [
        tokenize_chat(tok, p, a, cfg.max_len)
        for p, a in zip(data.harmful, data.harmful_answers, strict=True)
    ]
    rejected += [
        tokenize_chat(tok, p, r, cfg.max_len)
        for p, r in zip(data.harmless, data.harmless_refusals, strict=True)
    ]
    return list(zip(chosen, rejected, strict=True))


def csft_examples(
    adapter: ModelAdapter, data: AlignmentData, cfg: RecipeConfig, rng: random.Random
) -> list[tuple[Tokenized, float]]:
    """C-SFT items and weights: expert data as usual, bad answers under a low-quality marker.

    The marker is a system turn; `ModelAdapter.format_chat` folds it into the user message
    for templates that reject a system role (Gemma), so every chat template works.
    """
    tok = adapter.tokenizer
    good = _sft_examples(tok, data, cfg, rng)
    bad = []
    for prompt, answer in zip(data.harmful, data.harmful_answers, strict=True):
        text = adapter.format_chat(prompt, system=CSFT_LOW_QUALITY)
        p_ids = tok(text, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer + " " + (tok.eos_token or ""), add_special_tokens=False)["input_ids"]
        ids = (p_ids + a_ids)[: cfg.max_len]
        bad.append(Tokenized(tuple(ids), tuple(([-100] * len(p_ids) + a_ids)[: cfg.max_len])))
    return [(t, 1.0) for t in good] + [(t, cfg.low_quality_weight) for t in bad]


def _csft_step(
    model: PreTrainedModel, items: list[tuple[Tokenized, float]], pad: int
) -> Callable[[list[int]], torch.Tensor]:
    """C-RLFT style loss: per-sequence mean NLL, weighted by each item's class weight."""

    def step(idx: list[int]) -> torch.Tensor:
        logp, ntok = sequence_logps(model, collate([items[i][0] for i in idx], pad))
        w = torch.tensor([items[i][1] for i in idx])
        return -(w * logp / ntok.clamp(min=1)).sum() / w.sum()

    return step


def align(
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: AlignmentData,
    config: RecipeConfig,
    seed: int,
    validation: AlignmentData | None = None,
) -> tuple[PreTrainedModel, dict[str, dict]]:
    """Apply `config`'s recipe to a copy of `base`; returns the aligned model and phase stats.

    With `config.select_every` the best checkpoint on `validation` is kept (organisms: two
    training topics left out of `data`, `data.organism_data_split`; without `validation` the
    last prompts of each class are held out) and "selection" in the stats records it. For a
    'last:N' scope the stats also hold "scope": whether the LM head was tied to the embedding
    and so left frozen.
    """
    model = copy.deepcopy(base)
    torch.manual_seed(seed)  # a LoRA scope draws its A matrices from torch's global generator
    rng = random.Random(seed)
    pad = tokenizer.pad_token_id
    tc = TrainConfig(steps=config.steps, lr=config.lr, batch_size=config.batch_size, seed=seed)
    if config.selects_on_topics and validation is None:
        data, validation = split_validation(data, config.select_val_n)
    selector: CheckpointSelector | None = None

    def scoped() -> PreTrainedModel:
        nonlocal selector
        scoped_model = apply_scope(model, config)
        if config.selects_on_topics and validation is not None:
            selector = CheckpointSelector(
                scoped_model,
                tokenizer,
                validation,
                config.select_every,
                config.steps,
                config.max_new_tokens,
            )
        return scoped_model

    stats: dict[str, TrainStats | dict] = {}
    if config.kind == "sft":
        model = scoped()
        examples = _sft_examples(tokenizer, data, config, rng)
        stats["sft"] = train_causal_lm(model, examples, tc, pad, selector)
    elif config.kind in ("dpo", "orpo"):
        reference = copy.deepcopy(base).eval()
        pairs = _pairs(tokenizer, data, config, rng)
        model = scoped()
        if config.kind == "dpo":
            step = dpo_loss(model, reference, pairs, pad, config.beta, config.nll_weight)
        else:
            step = orpo_loss(model, pairs, pad, config.beta)
        stats[config.kind] = optimise(model, len(pairs), step, tc, selector)
    elif config.kind == "csft":
        items = csft_examples(ModelAdapter(base, tokenizer), data, config, rng)
        model = scoped()
        stats["csft"] = optimise(model, len(items), _csft_step(model, items, pad), tc, selector)
    else:
        model = apply_scope(model, config)
        stats.update(
            rl_align(
                model,
                base,
                tokenizer,
                data,
                config,
                seed,
                lambda warm: _sft_examples(tokenizer, warm, config, rng),
            )
        )
    if selector is not None:
        stats["selection"] = selector.restore()
    model = _finish(model)
    out = {k: v if isinstance(v, dict) else v.to_dict() for k, v in stats.items()}
    if (record := scope_record(model, config)) is not None:
        out["scope"] = record
    return model, out
