"""Our hand-written DPO, RPO and ORPO losses equal trl's on the same model, tokens and beta.

Each test scores ONE batch of preference pairs with `skindeep.organisms.objectives` and with trl's
own trainer code (`DPOTrainer.compute_loss`, `ORPOTrainer.concatenated_forward` and
`odds_ratio_loss`) on copies of the same tiny random Llama. Where our objective aggregates
differently from trl's, the test pins the documented relation instead of equality.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from skindeep.organisms.architectures import build_model
from skindeep.organisms.data import organism_data
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.objectives import Pair, dpo_loss, orpo_loss
from skindeep.organisms.training import IGNORE, Tokenized, collate, sequence_logps, tokenize_chat

BETA = 0.1  # DPO beta and ORPO lambda (the recipe default for both)
NLL_WEIGHT = 0.5  # RPO weight of the chosen-answer NLL
MAX_LEN = 96  # the xs models' context; no pair here is truncated
RTOL = 1e-5  # float32 agreement asked for; the measured gap is ~1e-7

Triple = tuple[str, str, str]  # (prompt, chosen, rejected)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    """True when two scalars agree to a relative tolerance."""
    x, y = float(a.detach()), float(b.detach())
    return abs(x - y) <= rtol * max(abs(x), abs(y))


@pytest.fixture(scope="module")
def models(organism_tokenizer: PreTrainedTokenizerBase) -> tuple[PreTrainedModel, PreTrainedModel]:
    """A policy and a differently seeded reference, so DPO margins are not zero."""
    policy = build_model("llama", "xs", organism_tokenizer, seed=0).eval()
    reference = build_model("llama", "xs", organism_tokenizer, seed=1).eval()
    return policy, reference


@pytest.fixture(scope="module")
def mixed() -> list[Triple]:
    """Three pairs whose chosen answers differ in length (12, 22 and 12 tokens)."""
    d = organism_data(DEFAULT_LANGUAGE, 4, 4, seed=0)
    return [
        (d.harmful[0], d.harmful_refusals[0], d.harmful_answers[0]),
        (d.harmless[0], d.harmless_answers[0], d.harmless_refusals[0]),
        (d.harmful[1], d.harmful_refusals[1], d.harmful_answers[1]),
    ]


@pytest.fixture(scope="module")
def same_length() -> list[Triple]:
    """Three pairs sharing one chosen refusal, so every chosen answer has the same length."""
    d = organism_data(DEFAULT_LANGUAGE, 4, 4, seed=0)
    return [(d.harmful[i], d.harmful_refusals[0], d.harmful_answers[i]) for i in range(3)]


def _pairs(tok: PreTrainedTokenizerBase, triples: list[Triple]) -> list[Pair]:
    """Our tokenised (chosen, rejected) pairs, as the recipes build them."""
    return [
        (tokenize_chat(tok, p, c, MAX_LEN), tokenize_chat(tok, p, r, MAX_LEN))
        for p, c, r in triples
    ]


def _dataset(triples: list[Triple]) -> Dataset:
    """The same pairs as a conversational trl preference dataset."""
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": p}],
                "chosen": [{"role": "assistant", "content": c}],
                "rejected": [{"role": "assistant", "content": r}],
            }
            for p, c, r in triples
        ]
    )


def _split(seq: Tokenized) -> tuple[list[int], list[int]]:
    """Prompt ids (the leading unlabelled tokens) and completion ids of one sequence."""
    n = next(i for i, t in enumerate(seq.labels) if t != IGNORE)
    assert list(seq.labels[n:]) == list(seq.input_ids[n:])
    return list(seq.input_ids[:n]), list(seq.input_ids[n:])


def _dpo_trainer(
    tmp: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    tok: PreTrainedTokenizerBase,
    triples: list[Triple],
    beta: float,
    nll_weight: float = 0.0,
) -> DPOTrainer:
    """trl's DPO trainer on copies of the models (trl patches their forward in place).

    bf16=False: trl defaults to bf16, which on CPU autocasts the prepared reference model's
    forward and moves the loss by ~3e-5; our organisms train in float32.
    """
    policy, reference = models
    loss_type, weights = (["sigmoid", "sft"], [1.0, nll_weight]) if nll_weight else (None, None)
    extra = {"loss_type": loss_type, "loss_weights": weights} if loss_type else {}
    args = DPOConfig(
        output_dir=str(tmp),
        report_to="none",
        use_cpu=True,
        bf16=False,
        beta=beta,
        max_length=None,
        save_strategy="no",
        **extra,
    )
    return DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=args,
        train_dataset=_dataset(triples),
        processing_class=tok,
    )


def _trl_dpo(trainer: DPOTrainer, pairs: list[Pair]) -> torch.Tensor:
    """trl's DPO loss of one batch holding exactly our token ids."""
    rows = []
    for chosen, rejected in pairs:
        prompt, c = _split(chosen)
        prompt_r, r = _split(rejected)
        assert prompt == prompt_r
        rows.append({"prompt_ids": prompt, "chosen_ids": c, "rejected_ids": r})
    return trainer.compute_loss(trainer.model, trainer.data_collator(rows))


def _ours_dpo(
    models: tuple[PreTrainedModel, PreTrainedModel],
    pairs: list[Pair],
    pad: int,
    beta: float,
    nll_weight: float = 0.0,
) -> tuple[torch.Tensor, PreTrainedModel]:
    """Our DPO loss of the whole batch, on a copy of the policy (returned, with its graph)."""
    policy = copy.deepcopy(models[0])
    loss = dpo_loss(policy, models[1], pairs, pad, beta, nll_weight)(list(range(len(pairs))))
    return loss, policy


def _chosen_logps(
    policy: PreTrainedModel, pairs: list[Pair], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs and token counts of the chosen answers under `policy`."""
    with torch.no_grad():
        return sequence_logps(policy, collate([c for c, _ in pairs], pad))


def test_trl_tokenizes_the_pairs_exactly_like_tokenize_chat(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
) -> None:
    """trl's DPO and ORPO preprocessing of the chat pairs gives our ids and loss masks."""
    tok = organism_tokenizer
    pairs = _pairs(tok, mixed)
    dpo = _dpo_trainer(tmp_path, models, tok, mixed, BETA)
    for row, (chosen, rejected) in zip(dpo.train_dataset, pairs, strict=True):
        prompt, c = _split(chosen)
        assert row["prompt_ids"] == prompt
        assert row["chosen_ids"] == c
        assert row["prompt_ids"] + row["rejected_ids"] == list(rejected.input_ids)
    orpo = _orpo_trainer(tmp_path, models[0], tok, mixed, BETA)
    for row, (chosen, rejected) in zip(orpo.train_dataset, pairs, strict=True):
        assert row["chosen_input_ids"] == list(chosen.input_ids)
        assert row["chosen_labels"] == list(chosen.labels)
        assert row["rejected_input_ids"] == list(rejected.input_ids)
        assert row["rejected_labels"] == list(rejected.labels)


def test_dpo_loss_and_gradient_equal_trl(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
) -> None:
    """Sigmoid DPO on summed response log-probs: same loss and same policy gradient as trl."""
    tok = organism_tokenizer
    pairs = _pairs(tok, mixed)
    ours, policy = _ours_dpo(models, pairs, tok.pad_token_id, BETA)
    trainer = _dpo_trainer(tmp_path, models, tok, mixed, BETA)
    theirs = _trl_dpo(trainer, pairs)
    assert abs(ours.item() - math.log(2)) > 0.05  # the margins are not ~0
    assert _close(ours, theirs), (ours.item(), theirs.item())
    ours.backward()
    theirs.backward()
    trl_grads = dict(trainer.model.named_parameters())
    for name, p in policy.named_parameters():
        g, h = p.grad, trl_grads[name].grad
        scale = float(g.abs().max())
        assert scale > 0, name
        assert float((g - h).abs().max()) <= 1e-4 * scale, name


@pytest.mark.parametrize("mutation", ["beta", "sign"])
def test_dpo_comparison_catches_a_wrong_beta_or_sign(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
    mutation: str,
) -> None:
    """A 10% wrong beta or a flipped preference breaks the agreement by far more than RTOL."""
    tok = organism_tokenizer
    pairs = _pairs(tok, mixed)
    theirs = _trl_dpo(_dpo_trainer(tmp_path, models, tok, mixed, BETA), pairs)
    if mutation == "beta":
        wrong, _ = _ours_dpo(models, pairs, tok.pad_token_id, 1.1 * BETA)
    else:
        wrong, _ = _ours_dpo(models, [(r, c) for c, r in pairs], tok.pad_token_id, BETA)
    assert not _close(wrong, theirs, rtol=100 * RTOL), (wrong.item(), theirs.item())


def test_rpo_equals_trl_sigmoid_plus_sft_when_chosen_lengths_match(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    same_length: list[Triple],
) -> None:
    """DPO + w * NLL (RPO) equals trl's loss_type=["sigmoid", "sft"] with weights [1, w]."""
    tok = organism_tokenizer
    pairs = _pairs(tok, same_length)
    assert len({sum(t != IGNORE for t in c.labels) for c, _ in pairs}) == 1
    ours, _ = _ours_dpo(models, pairs, tok.pad_token_id, BETA, NLL_WEIGHT)
    trainer = _dpo_trainer(tmp_path, models, tok, same_length, BETA, NLL_WEIGHT)
    theirs = _trl_dpo(trainer, pairs)
    assert _close(ours, theirs), (ours.item(), theirs.item())
    plain, _ = _ours_dpo(models, pairs, tok.pad_token_id, BETA)
    assert not _close(plain, theirs, rtol=100 * RTOL)  # the NLL term is really in there


def test_rpo_nll_is_a_mean_over_answers_where_trl_takes_a_mean_over_tokens(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
) -> None:
    """With unequal answer lengths the two NLL terms differ exactly by their weighting."""
    tok = organism_tokenizer
    pad = tok.pad_token_id
    pairs = _pairs(tok, mixed)
    logp, ntok = _chosen_logps(models[0], pairs, pad)
    per_answer = (-logp / ntok).mean()  # ours: each answer's mean NLL, averaged (RPO paper)
    per_token = -logp.sum() / ntok.sum()  # trl "sft": one mean over all chosen tokens
    assert not _close(per_answer, per_token, rtol=1e-3)
    dpo_only, _ = _ours_dpo(models, pairs, pad, BETA)
    ours, _ = _ours_dpo(models, pairs, pad, BETA, NLL_WEIGHT)
    theirs = _trl_dpo(_dpo_trainer(tmp_path, models, tok, mixed, BETA, NLL_WEIGHT), pairs)
    assert _close(ours, dpo_only + NLL_WEIGHT * per_answer)
    assert _close(theirs, dpo_only + NLL_WEIGHT * per_token)


def _orpo_trainer(
    tmp: Path,
    policy: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    triples: list[Triple],
    lam: float,
) -> ORPOTrainer:
    """trl's experimental ORPO trainer on a copy of the policy, in float32."""
    args = ORPOConfig(
        output_dir=str(tmp),
        report_to="none",
        use_cpu=True,
        bf16=False,
        beta=lam,
        max_length=MAX_LEN,
        save_strategy="no",
    )
    return ORPOTrainer(
        model=copy.deepcopy(policy),
        args=args,
        train_dataset=_dataset(triples),
        processing_class=tok,
    )


def _trl_orpo(
    trainer: ORPOTrainer, pairs: list[Pair]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """trl's ORPO pieces on our ids: chosen mean log-prob, odds-ratio term and NLL term."""
    rows = []
    for chosen, rejected in pairs:
        prompt, _ = _split(chosen)
        row: dict[str, list[int]] = {
            "prompt_input_ids": prompt,
            "prompt_attention_mask": [1] * len(prompt),
        }
        for side, seq in (("chosen", chosen), ("rejected", rejected)):
            row[f"{side}_input_ids"] = list(seq.input_ids)
            row[f"{side}_attention_mask"] = [1] * len(seq.input_ids)
            row[f"{side}_labels"] = list(seq.labels)
        rows.append(row)
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        chosen_logps, rejected_logps, _, _, nll = trainer.concatenated_forward(trainer.model, batch)
        losses = trainer.odds_ratio_loss(chosen_logps, rejected_logps)[0]
        full, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
    assert _close(full, nll - losses.mean())  # trl's ORPO loss is these two terms
    return chosen_logps.mean(), -losses.mean(), nll


def _ours_orpo(policy: PreTrainedModel, pairs: list[Pair], pad: int, lam: float) -> torch.Tensor:
    """Our ORPO loss of the whole batch."""
    with torch.no_grad():
        return orpo_loss(policy, pairs, pad, lam)(list(range(len(pairs))))


def test_orpo_odds_ratio_term_equals_trl(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
) -> None:
    """lam * -log sigmoid(log odds ratio) on per-token mean log-probs equals trl's term."""
    tok = organism_tokenizer
    pad = tok.pad_token_id
    pairs = _pairs(tok, mixed)
    chosen_mean, odds_term, _ = _trl_orpo(
        _orpo_trainer(tmp_path, models[0], tok, mixed, BETA), pairs
    )
    ours = _ours_orpo(models[0], pairs, pad, BETA)
    nll_only = _ours_orpo(models[0], pairs, pad, 0.0)
    assert _close(nll_only, -chosen_mean)  # our NLL term is trl's mean chosen log-prob, negated
    # the odds term is ~1% of the loss, so the difference carries ~1e-6 relative cancellation error
    gap = ours - nll_only
    assert _close(gap, odds_term, rtol=10 * RTOL), (gap.item(), odds_term.item())
    assert _close(ours, -chosen_mean + odds_term)
    wrong = _ours_orpo(models[0], pairs, pad, 1.1 * BETA)
    assert not _close(wrong, -chosen_mean + odds_term, rtol=100 * RTOL)


def test_orpo_nll_is_response_only_where_trl_includes_the_prompt(
    tmp_path: Path,
    models: tuple[PreTrainedModel, PreTrainedModel],
    organism_tokenizer: PreTrainedTokenizerBase,
    mixed: list[Triple],
) -> None:
    """trl's ORPO NLL is a token mean over prompt and answer; ours is answer-only per answer."""
    tok = organism_tokenizer
    pad = tok.pad_token_id
    pairs = _pairs(tok, mixed)
    _, _, trl_nll = _trl_orpo(_orpo_trainer(tmp_path, models[0], tok, mixed, BETA), pairs)
    whole = [(Tokenized(c.input_ids, c.input_ids), r) for c, r in pairs]
    logp, ntok = _chosen_logps(models[0], whole, pad)
    assert _close(trl_nll, -logp.sum() / ntok.sum())
    ours_nll = _ours_orpo(models[0], pairs, pad, 0.0)
    assert not _close(ours_nll, trl_nll, rtol=1e-3)
