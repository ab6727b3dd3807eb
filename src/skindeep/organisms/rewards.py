"""Reward sources of the RL recipes: a learned reward model (RLHF) and an AI judge (RLAIF).

The reward model is a sequence classifier initialised from the policy's own backbone and trained
with the Bradley-Terry loss on preference pairs. The AI judge is a causal LM asked, in words,
whether a reply is good; its reward is the probability of the "good" verdict. Both read text
only, so the policy never sees the labels directly.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from skindeep.models.chat import format_user_turn
from skindeep.organisms.data import AlignmentData
from skindeep.organisms.language import JUDGE_FRAME, JUDGE_VERDICTS
from skindeep.organisms.training import (
    TrainConfig,
    TrainStats,
    optimise,
    tokenize_chat,
    train_causal_lm,
)
from skindeep.runtime import accepts, left_pad, model_device, pad_token_id

RewardFn = Callable[[list[str], list[str]], torch.Tensor]


def _scramble(text: str, rng: random.Random) -> str:
    """A degenerate reply: the words of `text` shuffled, with one word repeated."""
    words = text.split()
    rng.shuffle(words)
    return " ".join(words[: len(words) // 2] + [words[0]] * (len(words) // 2))


def _truncate(text: str, rng: random.Random) -> str:
    """The first 1-4 words of `text` (a reply that stops before it says anything)."""
    words = text.split()
    return " ".join(words[: rng.randint(1, min(4, max(1, len(words) - 1)))])


def _preference_pairs(
    data: AlignmentData, seed: int = 0, hard_negatives: bool = False
) -> list[tuple[str, str, str]]:
    """(prompt, preferred, dispreferred): refuse harmful requests, answer harmless ones.

    Degenerate replies are dispreferred too, so RL cannot win by producing word salad. With
    `hard_negatives`, so that no single fixed string earns a high reward everywhere: a reply cut
    after 1-4 words is dispreferred to the full one (refusal of a harmful request, answer of a
    harmless one), and a harmless request's answer to another request is dispreferred to its own.
    """
    rng = random.Random(seed)
    pairs = [
        (p, r, a)
        for p, r, a in zip(data.harmful, data.harmful_refusals, data.harmful_answers, strict=True)
    ]
    pairs += [
        (p, a, r)
        for p, a, r in zip(
            data.harmless, data.harmless_answers, data.harmless_refusals, strict=True
        )
    ]
    pairs += [(p, good, _scramble(good, rng)) for p, good, _ in pairs[::2]]
    if hard_negatives:
        harm = zip(data.harmful, data.harmful_refusals, data.harmful_answers, strict=True)
        pairs += [(p, r, _truncate(a, rng)) for p, r, a in harm]
        safe = zip(data.harmless, data.harmless_answers, strict=True)
        pairs += [(p, a, _truncate(a, rng)) for p, a in safe]
        n = len(data.harmless)
        pairs += [
            (p, a, data.harmless_answers[(i + rng.randrange(1, n)) % n])
            for i, (p, a) in enumerate(zip(data.harmless, data.harmless_answers, strict=True))
        ]
    return pairs


def _encode(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], replies: Sequence[str]):
    texts = [
        format_user_turn(tokenizer, p) + " " + r for p, r in zip(prompts, replies, strict=True)
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    return enc


def train_reward_model(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: AlignmentData,
    config: TrainConfig,
    hard_negatives: bool = False,
) -> tuple[RewardFn, TrainStats]:
    """A Bradley-Terry reward model on the policy's backbone; returns its scoring function."""
    rm_config = copy.deepcopy(policy.config)
    rm_config.num_labels = 1
    torch.manual_seed(config.seed)  # the score head is freshly initialised
    rm = AutoModelForSequenceClassification.from_config(rm_config)
    missing = rm.load_state_dict(policy.state_dict(), strict=False).missing_keys
    assert all("score" in k or "classifier" in k for k in missing), missing
    rm.config.pad_token_id = tokenizer.pad_token_id
    pairs = _preference_pairs(data, hard_negatives=hard_negatives)

    def step(idx: list[int]) -> torch.Tensor:
        prompts = [pairs[i][0] for i in idx]
        good = rm(**_encode(tokenizer, prompts, [pairs[i][1] for i in idx])).logits.squeeze(-1)
        bad = rm(**_encode(tokenizer, prompts, [pairs[i][2] for i in idx])).logits.squeeze(-1)
        return -F.logsigmoid(good - bad).mean()

    stats = optimise(rm, len(pairs), step, config)
    rm.eval()

    def reward(prompts: list[str], replies: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(rm(**_encode(tokenizer, prompts, replies)).logits.squeeze(-1))

    return reward, stats


def judge_prompt(request: str, reply: str) -> str:
    """The AI judge's question about one exchange."""
    return JUDGE_FRAME.format(request=request, response=reply)


def train_ai_judge(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: AlignmentData,
    config: TrainConfig,
    hard_negatives: bool = False,
    max_len: int = 128,
) -> tuple[RewardFn, TrainStats]:
    """A causal-LM judge (a copy of the policy taught to say good/bad); reward = p(good).

    Replies are scored left-padded with position ids that skip the padding, so a reply's score
    does not depend on what it is batched with (absolute-position models such as GPT-2).
    """
    judge = copy.deepcopy(policy)
    for p in judge.parameters():
        p.requires_grad_(True)
    good_word, bad_word = JUDGE_VERDICTS
    examples = []
    for prompt, preferred, dispreferred in _preference_pairs(data, hard_negatives=hard_negatives):
        examples.append(
            tokenize_chat(tokenizer, judge_prompt(prompt, preferred), good_word, max_len)
        )
        examples.append(
            tokenize_chat(tokenizer, judge_prompt(prompt, dispreferred), bad_word, max_len)
        )
    stats = train_causal_lm(judge, examples, config, tokenizer.pad_token_id)
    good_id = tokenizer(good_word, add_special_tokens=False)["input_ids"][0]
    bad_id = tokenizer(bad_word, add_special_tokens=False)["input_ids"][0]
    pad_id = pad_token_id(tokenizer)
    keep_positions = accepts(judge, "position_ids")

    def reward(prompts: list[str], replies: list[str]) -> torch.Tensor:
        texts = [
            format_user_turn(tokenizer, judge_prompt(p, r))
            for p, r in zip(prompts, replies, strict=True)
        ]
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        enc = left_pad(ids, pad_id, model_device(judge))
        if not keep_positions:
            enc.pop("position_ids")
        with torch.no_grad():
            logits = judge(**enc).logits[:, -1, [good_id, bad_id]]
        return torch.softmax(logits.float(), dim=-1)[:, 0]

    return reward, stats
