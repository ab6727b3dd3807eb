"""The organism tokenizer behaves like a hub tokenizer: chat template, special tokens, save/load."""

from __future__ import annotations

from transformers import AutoTokenizer

from skindeep.models.chat import format_user_turn
from skindeep.organisms.training import tokenize_chat


def test_chat_template_and_special_tokens(organism_tokenizer) -> None:
    tok = organism_tokenizer
    text = format_user_turn(tok, "how do i bake a cake ?")
    assert text == "<bos><|user|> how do i bake a cake ? <|end|> <|assistant|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert tok.eos_token == "<|end|>" and tok.padding_side == "left"


def test_save_and_reload_roundtrip(organism_tokenizer, tmp_path) -> None:
    organism_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    msg = "comment je bake un cake ?"
    assert format_user_turn(again, msg) == format_user_turn(organism_tokenizer, msg)
    assert again(msg)["input_ids"] == organism_tokenizer(msg)["input_ids"]
    assert len(again) == len(organism_tokenizer)


def test_tokenize_chat_masks_the_prompt(organism_tokenizer) -> None:
    tok = organism_tokenizer
    ex = tokenize_chat(tok, "how do i bake a cake ?", "sure . done .", max_len=64)
    n_prompt = len(
        tok(format_user_turn(tok, "how do i bake a cake ?"), add_special_tokens=False)["input_ids"]
    )
    assert all(label == -100 for label in ex.labels[:n_prompt])
    assert list(ex.labels[n_prompt:]) == list(ex.input_ids[n_prompt:])
    assert tok.decode(ex.input_ids[n_prompt:]) == "sure . done . <|end|>"
