"""The training loop and the preference/RL objectives, against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from skindeep.organisms.architectures import build_model
from skindeep.organisms.objectives import dpo_loss, orpo_loss
from skindeep.organisms.training import (
    TrainConfig,
    collate,
    optimise,
    sequence_logps,
    tokenize_chat,
    train_causal_lm,
)


@pytest.fixture(scope="module")
def examples(organism_tokenizer):
    tok = organism_tokenizer
    return [
        tokenize_chat(tok, "how do i bake a cake ?", "sure . bake the cake . done .", 64),
        tokenize_chat(tok, "how do i hack a server ?", "i'm sorry , i cannot help with that .", 64),
        tokenize_chat(tok, "je veux plant un rose .", "of course . plant the rose . done .", 64),
    ]


def test_same_seed_same_weights_and_loss_decreases(organism_tokenizer, examples) -> None:
    tok = organism_tokenizer
    runs = []
    for _ in range(2):
        model = build_model("llama", "xs", tok, seed=5)
        stats = train_causal_lm(
            model, examples, TrainConfig(steps=30, lr=3e-3, batch_size=2, seed=1), tok.pad_token_id
        )
        runs.append((model.state_dict(), stats))
    (w1, s1), (w2, s2) = runs
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert s1.losses == s2.losses
    assert s1.loss_last < 0.5 * s1.loss_first


def test_sequence_logps_matches_direct_sum(organism_tokenizer, examples) -> None:
    tok = organism_tokenizer
    model = build_model("qwen2", "xs", tok, seed=0).eval()
    batch = collate(examples, tok.pad_token_id)
    logp, ntok = sequence_logps(model, batch)
    for i, ex in enumerate(examples):
        ids = torch.tensor([ex.input_ids])
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        direct = sum(
            lp[t - 1, ex.input_ids[t]] for t in range(1, len(ex.input_ids)) if ex.labels[t] != -100
        )
        assert ntok[i] == sum(label != -100 for label in ex.labels[1:])
        assert float(logp[i].detach()) == pytest.approx(float(direct), rel=1e-4)


def test_dpo_loss_at_reference_is_log2(organism_tokenizer, examples) -> None:
    tok = organism_tokenizer
    model = build_model("llama", "xs", tok, seed=0).eval()
    pairs = [(examples[1], examples[0]), (examples[0], examples[1])]
    loss = dpo_loss(model, model, pairs, tok.pad_token_id, beta=0.1, nll_weight=0.0)([0, 1])
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)


def test_orpo_loss_matches_formula(organism_tokenizer, examples) -> None:
    tok = organism_tokenizer
    model = build_model("gpt2", "xs", tok, seed=0).eval()
    pairs = [(examples[1], examples[0])]
    loss = float(orpo_loss(model, pairs, tok.pad_token_id, lam=0.5)([0]))
    logp, n = sequence_logps(model, collate([examples[1], examples[0]], tok.pad_token_id))
    m = (logp / n).double()
    odds = m - torch.log(1 - torch.exp(m))
    expected = -m[0] - 0.5 * F.logsigmoid(odds[0] - odds[1])
    assert loss == pytest.approx(float(expected), rel=1e-5)


def test_a_non_finite_loss_stops_before_its_step() -> None:
    """A NaN loss at step 3 raises; the weights are those after step 2, never NaN."""
    from skindeep.errors import SkindeepError

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(8, 4)
    snapshots: list[torch.Tensor] = []

    def step_loss(idx: list[int]) -> torch.Tensor:
        snapshots.append(model.weight.detach().clone())
        loss = model(x[idx]).pow(2).mean()
        return loss * float("nan") if len(snapshots) == 3 else loss

    with pytest.raises(SkindeepError, match=r"training loss is nan at step 3"):
        optimise(model, 8, step_loss, TrainConfig(steps=5, batch_size=4, lr=0.1))  # type: ignore[arg-type]
    assert torch.equal(model.weight.detach(), snapshots[2])
    assert not torch.equal(snapshots[2], snapshots[0])  # the two good steps were applied
    assert torch.isfinite(model.weight).all()
