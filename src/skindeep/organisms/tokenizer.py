"""Word-level tokenizer for the organism language, wrapped as a Hugging Face fast tokenizer.

Built with `tokenizers` (WordLevel model, whitespace split) and saved with `save_pretrained`,
so organisms load through the same loader as any hub model, chat template included
(`skindeep.models.load_tokenizer` honours the folder's generic tokenizer class).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from skindeep.organisms.language import SPECIAL_TOKENS, ChatLanguage

#: Roles map to their own special tokens; the generation prompt is `<|assistant|>`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] | trim + ' <|end|> ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer(language: ChatLanguage) -> PreTrainedTokenizerFast:
    """A fast tokenizer whose vocabulary is the special tokens followed by the language's words."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in language.vocabulary():
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
        padding_side="left",
        model_max_length=256,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
