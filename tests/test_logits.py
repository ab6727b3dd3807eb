"""Refusal tokens, refusal score, next-token log-probabilities and KL against direct references."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
from scipy.special import rel_entr
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from skindeep.evaluation.logits import (
    kl_divergence,
    next_token_logprobs,
    refusal_score,
    refusal_tokens,
)
from skindeep.runtime import encode

PROMPTS = ["<s>hi", "<s>how do I bake a cake?", "<s>" + "x" * 30, "<s>tell me", "<s>ok?"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level: every printable character is one token."""
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *string.printable])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on refusals, so "I", "As", "Sorry" and " I" are whole tokens."""
    corpus = [
        "I'm sorry, I cannot help. As an AI I can't. Sorry, no. Well, I think.",
        "As an assistant, Sorry I am unable to. Ask the Assistant. Also a cake.",
        "Sorry, but no.",
    ] * 50
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core)


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A lowercase word-level vocabulary like the organisms': cased phrases are all `unk`."""
    words = ["<unk>", "i'm", "i", "sorry", ",", "cannot", "help", "sure", ".", "here"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    """A 2-layer random Llama in float64."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).to(torch.float64).eval()


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """The character tokenizer, built once."""
    return char_tokenizer()


@pytest.fixture(scope="module")
def model(tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """The random model, built once."""
    return tiny_llama(len(tok))


def single_logprobs(model, tok, prompt: str) -> torch.Tensor:
    """Reference: one unpadded forward pass, softmax of the last position, float64."""
    ids = torch.tensor([encode(tok, [prompt])[0]])
    with torch.no_grad():
        return torch.log_softmax(model(ids).logits[0, -1].double(), -1)


def test_refusal_tokens_rules() -> None:
    """Whole first words count ("I", "As", "Sorry", spaced too); bare letters like "A" do not."""
    chars = char_tokenizer()
    assert [chars.decode([i]) for i in refusal_tokens(chars)] == ["I"]
    bpe = bpe_tokenizer()
    pieces = {bpe.decode([i]) for i in refusal_tokens(bpe)}
    assert {"I", " I", "As", " As", "Sorry"} <= pieces
    assert all(p.strip() in {"I", "As", "Sorry"} for p in pieces)
    words = word_tokenizer()
    assert {words.decode([i]) for i in refusal_tokens(words)} == {"i'm", "i", "sorry"}
    with pytest.raises(ValueError, match="no refusal phrase"):
        refusal_tokens(words, phrases=["Hello there"])


def test_refusal_score_matches_softmax(model, tok) -> None:
    """Batched, left-padded score equals log p - log(1 - p) from single unpadded passes."""
    ids = [*refusal_tokens(tok), tok.convert_tokens_to_ids("S")]
    got = refusal_score(model, tok, PROMPTS, ids, batch_size=2)
    for prompt, score in zip(PROMPTS, got, strict=True):
        p = single_logprobs(model, tok, prompt).exp()[ids].sum().item()
        assert score == pytest.approx(np.log(p) - np.log1p(-p), rel=1e-9, abs=1e-9)
    assert got.dtype == np.float64 and got.shape == (len(PROMPTS),)


def test_refusal_score_finite_when_refusal_is_certain(tok) -> None:
    """p(refusal) that rounds to 1 still gives a finite score (no log(0))."""
    sure = tiny_llama(len(tok))
    head = torch.nn.Linear(32, len(tok), bias=True, dtype=torch.float64)
    torch.nn.init.zeros_(head.weight)
    ids = refusal_tokens(tok)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[ids] = 800.0
    sure.lm_head = head
    score = refusal_score(sure, tok, PROMPTS[:2], ids)
    expected = 800.0 - np.log(len(tok) - len(ids))
    np.testing.assert_allclose(score, expected, rtol=1e-12)


def test_refusal_score_validates_ids(model, tok) -> None:
    """Empty or out-of-vocabulary refusal ids are rejected with a clear message."""
    with pytest.raises(ValueError, match="empty"):
        refusal_score(model, tok, PROMPTS, [])
    with pytest.raises(ValueError, match="must lie in"):
        refusal_score(model, tok, PROMPTS, [10**6])


def test_next_token_logprobs_match_single_passes(model, tok) -> None:
    """Rows are normalised log-probabilities equal to unpadded single passes, in input order."""
    got = next_token_logprobs(model, tok, PROMPTS, batch_size=3, dtype=torch.float64)
    assert got.shape == (len(PROMPTS), len(tok))
    ref = torch.stack([single_logprobs(model, tok, p) for p in PROMPTS])
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    assert next_token_logprobs(model, tok, PROMPTS).dtype == torch.float32


def test_kl_against_scipy() -> None:
    """KL(orig || new) equals the sum of scipy's rel_entr, row by row."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50), size=4)
    q = rng.dirichlet(np.ones(50), size=4)
    expected = rel_entr(p, q).sum(axis=1)
    np.testing.assert_allclose(kl_divergence(np.log(p), np.log(q)), expected, rtol=1e-10)
    np.testing.assert_allclose(kl_divergence(torch.tensor(np.log(p)), np.log(q)), expected)


def test_kl_edge_cases() -> None:
    """KL(p || p) = 0; zeros of p add nothing; mass where q is 0 gives inf; shapes must agree."""
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]])
    with np.errstate(divide="ignore"):
        logp, logq = np.log(p), np.log(q)
    np.testing.assert_array_equal(kl_divergence(logp, logp), [0.0, 0.0])
    got = kl_divergence(logp, logq)
    assert got[0] == pytest.approx(np.log(2.0))
    assert got[1] == np.inf
    with pytest.raises(ValueError, match="shapes differ"):
        kl_divergence(logp, logq[:, :2])


def test_kl_under_a_hook_context(model, tok) -> None:
    """The functions just run forward: inside a hook the KL is positive, after it zero again."""
    before = next_token_logprobs(model, tok, PROMPTS)

    def damp(module, inputs, output):
        """Halve the first block's output: a stand-in for an intervention."""
        return (output[0] * 0.5, *output[1:]) if isinstance(output, tuple) else output * 0.5

    handle = model.model.layers[0].register_forward_hook(damp)
    try:
        during = next_token_logprobs(model, tok, PROMPTS)
    finally:
        handle.remove()
    after = next_token_logprobs(model, tok, PROMPTS)
    assert (kl_divergence(before, during) > 1e-6).all()
    np.testing.assert_array_equal(kl_divergence(before, after), np.zeros(len(PROMPTS)))
