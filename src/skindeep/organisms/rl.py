"""The RL recipes' training: SFT warm-up, then RLOO against a learned reward, guarded against
reward hacking the way RLHF practice does.

Three guards (SPEC 6; issue 9 measured an AI-judge policy that answered "of course ." to
everything while its reward rose): the reward is trained with hard negatives so that no single
fixed string scores well everywhere (`rewards._preference_pairs`); a KL penalty to the warmed-up
policy (`kl_coef`); and checkpoint selection on held-out behaviour: every `rl_select_every` RL
steps the policy's greedy refusal is measured on validation prompts that neither the reward nor
the policy trained on, and the best RL checkpoint is kept (never the warm-up itself;
`checkpoints.CheckpointSelector`). RL runs all its steps: there is no early stopping.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.organisms.checkpoints import CheckpointSelector, split_validation
from skindeep.organisms.data import AlignmentData
from skindeep.organisms.objectives import rloo_loss
from skindeep.organisms.rewards import train_ai_judge, train_reward_model
from skindeep.organisms.training import TrainConfig, TrainStats, optimise, train_causal_lm

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
        warm = data.subset(slice(None, n), slice(None, n))
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
    selector = (
        None
        if val is None
        else CheckpointSelector(
            model, tokenizer, val, config.rl_select_every, config.steps, config.max_new_tokens
        )
    )
    rl_batch = max(2, config.batch_size // config.rl_samples)
    rl = TrainConfig(steps=config.steps, lr=config.rl_lr, batch_size=rl_batch, seed=seed)
    stats["rl"] = optimise(model, len(prompts), step, rl, on_step=selector).to_dict()
    if selector is not None and selector.best_state is not None:
        stats["rl"].update(selector.restore())
    k = max(1, len(rewards) // 10)
    stats["rl"]["reward_first"] = sum(rewards[:k]) / k
    stats["rl"]["reward_last"] = sum(rewards[-k:]) / k
    return stats
