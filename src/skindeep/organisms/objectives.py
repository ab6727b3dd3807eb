"""Preference and RL objectives as per-batch losses for `training.optimise`.

DPO (Rafailov et al. 2023, with the optional NLL term of RPO), ORPO (Hong et al. 2024) and RLOO
(Ahmadian et al. 2024, REINFORCE with a leave-one-out baseline). Written against plain tensors
because trl's trainers spend more time per step on bookkeeping than a 1M-parameter organism
spends on its forward pass (measured: 1.6 s/step for trl DPO vs 0.1 s here, on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skindeep.models.chat import format_user_turn
from skindeep.organisms.training import (
    IGNORE,
    Tokenized,
    collate,
    sequence_logps,
    tokenize_chat,
)

Pair = tuple[Tokenized, Tokenized]  # (chosen, rejected)


def dpo_loss(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    pairs: Sequence[Pair],
    pad_id: int,
    beta: float,
    nll_weight: float,
) -> Callable[[list[int]], torch.Tensor]:
    """DPO on preference pairs; `nll_weight` > 0 adds the chosen-answer NLL (RPO)."""

    def step(idx: list[int]) -> torch.Tensor:
        batch = collate([pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], pad_id)
        logp, ntok = sequence_logps(model, batch)
        with torch.no_grad():
            ref_logp, _ = sequence_logps(reference, batch)
        n = len(idx)
        margin = (logp[:n] - ref_logp[:n]) - (logp[n:] - ref_logp[n:])
        loss = -F.logsigmoid(beta * margin).mean()
        if nll_weight > 0:
            loss = loss + nll_weight * (-logp[:n] / ntok[:n]).mean()
        return loss

    return step


def orpo_loss(
    model: PreTrainedModel, pairs: Sequence[Pair], pad_id: int, lam: float
) -> Callable[[list[int]], torch.Tensor]:
    """ORPO: NLL of the chosen answer plus lam times the log odds-ratio penalty; no reference."""

    def step(idx: list[int]) -> torch.Tensor:
        batch = collate([pairs[i][0] for i in idx] + [pairs[i][1] for i in idx], pad_id)
        logp, ntok = sequence_logps(model, batch)
        mean_logp = (logp / ntok).clamp(max=-1e-6)
        log_odds = mean_logp - torch.log1p(-torch.exp(mean_logp))
        n = len(idx)
        ratio = -F.logsigmoid(log_odds[:n] - log_odds[n:]).mean()
        return -mean_logp[:n].mean() + lam * ratio

    return step


def rloo_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    reward: Callable[[list[str], list[str]], torch.Tensor],
    samples: int,
    max_new_tokens: int,
    max_len: int,
    reference: PreTrainedModel | None = None,
    kl_coef: float = 0.0,
    log: list[float] | None = None,
) -> Callable[[list[int]], torch.Tensor]:
    """RLOO: sample `samples` answers per prompt, advantage = reward minus the others' mean.

    With a reference model, the reward is penalised by kl_coef times the sampled answer's
    per-token log-ratio to the reference (the usual RLHF KL penalty against reward hacking).
    """
    pad_id = tokenizer.pad_token_id

    def step(idx: list[int]) -> torch.Tensor:
        users = [prompts[i] for i in idx for _ in range(samples)]
        texts = [format_user_turn(tokenizer, u) for u in users]
        side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        tokenizer.padding_side = side
        model.eval()
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
            )
        model.train()
        answers = tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        raw = reward(users, answers).float()
        if log is not None:
            log.append(float(raw.mean()))
        seqs = [
            tokenize_chat(tokenizer, u, a.strip(), max_len)
            for u, a in zip(users, answers, strict=True)
        ]
        batch = collate(seqs, pad_id)
        logp, ntok = sequence_logps(model, batch)
        mean_logp = logp / ntok.clamp(min=1)
        if reference is not None and kl_coef > 0:
            with torch.no_grad():
                ref_logp, _ = sequence_logps(reference, batch)
            raw = raw - kl_coef * (mean_logp.detach() - ref_logp / ntok.clamp(min=1))
        rewards = raw.view(len(idx), samples)
        others = (rewards.sum(1, keepdim=True) - rewards) / max(1, samples - 1)
        adv = (rewards - others).view(-1)
        return -(adv * mean_logp).mean()

    return step


def labelled(seq: Tokenized) -> bool:
    """True when a sequence has at least one token with a loss."""
    return any(t != IGNORE for t in seq.labels)
