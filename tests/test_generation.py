"""Batched greedy generation on a tiny random Llama: padding, order, length limits, EOS."""

from __future__ import annotations

import copy
import string

import pytest
import torch
from rich.progress import Progress
from tokenizers import Tokenizer, decoders, models, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from skindeep.evaluation.generation import (
    GenerationOptions,
    generate,
    generate_responses,
    generate_token_ids,
)
from skindeep.models.chat import format_prompts
from skindeep.runtime import encode, left_pad, length_sorted_batches

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PROMPTS = ["hi", "how do I bake a cake?", "x" * 40, "tell me", "abc def ghi", "?", "a b c d e f g"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer that prepends <s> and has a chat template."""
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(string.printable)))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[4:],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer random Llama in float64, so greedy ties cannot flip on rounding noise."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        initializer_range=0.2,
    )
    return LlamaForCausalLM(config).to(torch.float64).eval()


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """The test tokenizer, built once."""
    return char_tokenizer()


@pytest.fixture(scope="module")
def model(tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """The test model, built once."""
    return tiny_llama(len(tok))


@pytest.fixture(scope="module")
def chat(tok: PreTrainedTokenizerFast) -> list[str]:
    """The test prompts in chat format."""
    return format_prompts(tok, PROMPTS)


def test_batched_equals_one_by_one(model, tok, chat) -> None:
    """Left-padded batches give token-for-token the output of unpadded single prompts."""
    batched = generate_token_ids(model, tok, chat, max_new_tokens=12, batch_size=3)
    single = [generate_token_ids(model, tok, [p], max_new_tokens=12)[0] for p in chat]
    assert batched == single
    assert any(len(set(row)) > 1 for row in batched)  # the random model says something


def test_order_preserved_under_permutation(model, tok, chat) -> None:
    """Outputs follow input order, whatever the length sorting did inside."""
    out = generate(model, tok, chat, max_new_tokens=8, batch_size=2)
    perm = [3, 0, 6, 2, 5, 1, 4]
    out_perm = generate(model, tok, [chat[i] for i in perm], max_new_tokens=8, batch_size=4)
    assert out_perm == [out[i] for i in perm]
    assert len(set(out)) > 1


@pytest.mark.parametrize("max_new_tokens", [1, 5])
def test_max_new_tokens_respected(model, tok, chat, max_new_tokens: int) -> None:
    """No response is longer than max_new_tokens; one without EOS is exactly that long."""
    ids = generate_token_ids(model, tok, chat, max_new_tokens=max_new_tokens, batch_size=4)
    assert all(len(row) <= max_new_tokens for row in ids)
    assert max(len(row) for row in ids) == max_new_tokens


def test_stops_and_cuts_at_eos(model, tok, chat) -> None:
    """Declaring a token the model emits as EOS cuts the response just before it."""
    free = generate_token_ids(model, tok, chat[:1], max_new_tokens=12)[0]
    k = next(i for i in range(1, len(free)) if free[i] not in free[:i])
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = free[k]
    try:
        cut = generate_token_ids(model, tok, chat, max_new_tokens=12, batch_size=4)
    finally:
        model.generation_config.eos_token_id = old
    assert cut[0] == free[:k]
    assert all(free[k] not in row for row in cut)


def test_forced_eos_gives_empty_output(tok, chat) -> None:
    """A model whose every next token is EOS stops at once and yields empty strings."""
    forced = tiny_llama(len(tok), seed=1)
    head = torch.nn.Linear(32, len(tok), bias=True, dtype=torch.float64)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[tok.eos_token_id] = 10.0
    forced.lm_head = head
    assert generate(forced, tok, chat, max_new_tokens=16, batch_size=3) == [""] * len(chat)


def test_tokenizer_state_untouched(model, chat) -> None:
    """Generation pads left without changing the tokenizer's own padding side."""
    right = char_tokenizer()
    right.padding_side = "right"
    generate(model, right, chat[:3], max_new_tokens=2)
    assert right.padding_side == "right"


def test_pad_falls_back_to_eos(model, chat) -> None:
    """A tokenizer without a pad token still generates, padding with EOS under the mask."""
    nopad = char_tokenizer()
    nopad.pad_token = None
    ref = generate(model, char_tokenizer(), chat, max_new_tokens=6, batch_size=4)
    assert generate(model, nopad, chat, max_new_tokens=6, batch_size=4) == ref


def test_progress_sinks(model, tok, chat) -> None:
    """A callable sees cumulative counts; a rich Progress gets a task that completes."""
    seen: list[int] = []
    generate(model, tok, chat, max_new_tokens=1, batch_size=3, progress=seen.append)
    assert seen == [3, 6, 7]
    with Progress(disable=True) as bar:
        generate(model, tok, chat, max_new_tokens=1, batch_size=3, progress=bar)
        assert bar.tasks[0].completed == len(chat)


def test_format_prompts_and_bos(tok) -> None:
    """Chat text carries its BOS once (not doubled on encoding); raw text gets it added."""
    chat = format_prompts(tok, ["hey"])
    assert chat == ["<s><|user|>hey<|end|><|assistant|>"]
    assert format_prompts(tok, ["hey"], fmt="raw") == ["hey"]
    chat_ids, raw_ids = encode(tok, [chat[0], "hey"])
    assert chat_ids.count(tok.bos_token_id) == 1
    assert raw_ids[0] == tok.bos_token_id
    with pytest.raises(ValueError, match="fmt"):
        format_prompts(tok, ["hey"], fmt="json")  # type: ignore[arg-type]


def test_appended_eos_dropped(tok) -> None:
    """A tokenizer that appends EOS to raw text does not end the prompt with it."""
    eos_tok = char_tokenizer()
    eos_tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    assert eos_tok("hey")["input_ids"][-1] == eos_tok.eos_token_id
    assert encode(eos_tok, ["hey", "hey</s>"]) == [
        encode(tok, ["hey"])[0],
        encode(tok, ["hey</s>"])[0],
    ]


def test_model_generation_config_does_not_leak(model, tok, chat) -> None:
    """Sampling, penalties and minimum lengths in the model's config do not change greedy output."""
    ref = generate_token_ids(model, tok, chat, max_new_tokens=10, batch_size=4)
    config = model.generation_config
    leaky = copy.deepcopy(config)
    leaky.update(do_sample=True, temperature=5.0, repetition_penalty=3.0, min_new_tokens=8)
    model.generation_config = leaky
    try:
        assert generate_token_ids(model, tok, chat, max_new_tokens=10, batch_size=4) == ref
        assert model.generation_config is leaky
    finally:
        model.generation_config = config


def test_left_pad_and_sorted_batches() -> None:
    """Padding goes left with masked-out positions; batches run longest first."""
    out = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert out["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert length_sorted_batches([1, 4, 2, 3], batch_size=3) == [[1, 3, 2], [0]]


def test_generate_responses_and_empty_input(model, tok) -> None:
    """The one-call path formats then generates; an empty prompt list gives an empty list."""
    opts = GenerationOptions(max_new_tokens=4, batch_size=2)
    assert generate_responses(model, tok, PROMPTS[:2], opts) == generate(
        model, tok, format_prompts(tok, PROMPTS[:2]), max_new_tokens=4
    )
    assert generate(model, tok, [], max_new_tokens=4) == []
