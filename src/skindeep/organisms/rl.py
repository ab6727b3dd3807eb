"""The RL recipes' training: SFT warm-up, then RLOO against a learned reward, guarded against
reward hacking the way RLHF practice does.

Three guards (SPEC 6; issue 9 measured an AI-judge policy that answered "of course ." to
everything while its reward rose): the reward is trained with hard negatives so that no single
fixed string scores well everywhere (`rewards._preference_pairs`); a KL penalty to the warmed-up
policy (`kl_coef`); and checkpoint selection on held-out behaviour: every `rl_select_every` RL
steps the policy's greedy refusal is measured on validation prompts that neither the reward nor
the policy trained on, the best RL checkpoint is kept (never the warm-up itself), and training
stops early once the policy has clearly left it behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.organisms.behaviour import behaviour_on
from skindeep.organisms.data import AlignmentData
from skindeep.organisms.objectives import rloo_loss
from skindeep.organisms.rewards import train_ai_judge, train_reward_model
from skindeep.organisms.training import TrainConfig, TrainStats, optimise, train_causal_lm

#: Early stopping: RL stops once PATIENCE checks in a row score STOP_DROP below the best one.
PATIENCE = 2
STOP_DROP = 0.2
#: Fields of RecipeConfig read only by the RL recipes (left out of other recipes' hashes).
RL_ONLY_FIELDS: frozenset[str] = frozenset({"rl_hard_negatives", "rl_select_every", "rl_val_n"})
#: Defaults of RL fields before recipe version 3. Other recipes ignore these fields but always
#: hashed them, so their hashes keep these values whatever the defaults are now.
LEGACY_RL_DEFAULTS: dict[str, float] = {
    "warmup_steps": 40,
    "warmup_n": 48,
    "reward_steps": 60,
    "rl_lr": 5e-4,
    "kl_coef": 0.1,
}


def _subset(data: AlignmentData, harm: slice, safe: slice) -> AlignmentData:
    return AlignmentData(
        harmful=data.harmful[harm],
        harmful_refusals=data.harmful_refusals[harm],
        harmful_answers=data.harmful_answers[harm],
        harmless=data.harmless[safe],
        harmless_answers=data.harmless_answers[safe],
        harmless_refusals=data.harmless_refusals[safe],
    )


def split_validation(data: AlignmentData, n_val: int) -> tuple[AlignmentData, AlignmentData | None]:
    """(training data, validation data): the last `n_val` prompts of each class held out.

    `n_val` shrinks to a quarter of the smaller class; with nothing to hold out, no validation.
    """
    n = min(n_val, len(data.harmful) // 4, len(data.harmless) // 4)
    if n < 1:
        return data, None
    return (
        _subset(data, slice(None, -n), slice(None, -n)),
        _subset(data, slice(-n, None), slice(-n, None)),
    )


def _selection_score(model, tokenizer, val: AlignmentData, max_new_tokens: int) -> float:
    """Harmful minus harmless refusal on validation prompts (degenerate counts against)."""
    b = behaviour_on(model, tokenizer, val.harmful, val.harmless, max_new_tokens)
    return b.harmful.rate - b.harmless.rate


def rl_align(
    model: PreTrainedModel,
    base: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: AlignmentData,
    config,
    seed: int,
    sft_examples: Callable[[AlignmentData], list],
) -> dict[str, TrainStats | dict]:
    """Warm up `model` (already scoped) with SFT, then RLOO against a reward trained on `base`.

    Returns the phase stats; "rl" also records the reward curve's ends and, with checkpoint
    selection, the validation score at every candidate and the step kept.
    """
    stats: dict[str, TrainStats | dict] = {}
    if config.rl_select_every:
        data, val = split_validation(data, config.rl_val_n)
    else:
        val = None
    rc = TrainConfig(
        steps=config.reward_steps, lr=config.lr, batch_size=config.batch_size, seed=seed
    )
    trainer = train_reward_model if config.kind == "rl_reward_model" else train_ai_judge
    reward, stats["reward"] = trainer(
        base, tokenizer, data, rc, hard_negatives=config.rl_hard_negatives
    )
    n = config.warmup_n
    if config.warmup_steps:
        wc = TrainConfig(
            steps=config.warmup_steps, lr=config.lr, batch_size=config.batch_size, seed=seed
        )
        warm = _subset(data, slice(None, n), slice(None, n))
        stats["warmup_sft"] = train_causal_lm(model, sft_examples(warm), wc, tokenizer.pad_token_id)
    prompts = data.harmful + data.harmless
    rewards: list[float] = []
    reference = copy.deepcopy(model).eval()
    step = rloo_loss(
        model,
        tokenizer,
        prompts,
        reward,
        config.rl_samples,
        config.max_new_tokens,
        config.max_len,
        reference,
        config.kl_coef,
        rewards,
    )
    checkpoints: list[tuple[int, float]] = []
    best: dict = {"score": -float("inf"), "step": 0, "state": None}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]

    def select(step_index: int, _loss: float) -> None:
        done = step_index + 1
        if val is None or (done % config.rl_select_every and done != config.steps):
            return
        was_training = model.training
        score = _selection_score(model, tokenizer, val, config.max_new_tokens)
        model.train(was_training)
        checkpoints.append((done, round(score, 4)))
        if score >= best["score"]:  # ties: the later checkpoint (more RL)
            params = dict(model.named_parameters())
            best.update(
                score=score, step=done, state={k: params[k].detach().clone() for k in trainable}
            )

    rl_batch = max(2, config.batch_size // config.rl_samples)
    rl = TrainConfig(steps=config.steps, lr=config.rl_lr, batch_size=rl_batch, seed=seed)
    stats["rl"] = optimise(model, len(prompts), step, rl, on_step=select).to_dict()
    if best["state"] is not None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in best["state"].items():
                params[k].copy_(v)
        stats["rl"]["selected_step"] = best["step"]
        stats["rl"]["validation"] = checkpoints
        stats["rl"]["n_validation"] = len(val.harmful) if val is not None else 0
    k = max(1, len(rewards) // 10)
    stats["rl"]["reward_first"] = sum(rewards[:k]) / k
    stats["rl"]["reward_last"] = sum(rewards[-k:]) / k
    return stats
