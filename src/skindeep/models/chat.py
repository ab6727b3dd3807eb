"""The one prompt formatter: a user turn (and a whole exchange) through the chat template.

Every model input in skindeep that is "in chat format" comes from `format_user_turn`: the
tokenizer's chat template with the generation prompt when it has one, else the documented
fallback `FALLBACK_SYSTEM` + `FALLBACK_TEMPLATE` (and `format_prompts` warns once per call
site with `ChatTemplateWarning`). A template that rejects a system role gets the system text
prepended to the user message.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

from jinja2 import TemplateError

PromptFormat = Literal["chat", "raw"]
"""`chat` wraps each prompt in the chat template (or the fallback); `raw` feeds it as is."""

FALLBACK_SYSTEM = "### System:\n{system}\n\n"
FALLBACK_TEMPLATE = "### User:\n{user}\n\n### Assistant:\n"
"""Chat format used when a tokenizer has no template: optional system block, user, assistant."""

_SENTINEL = "SKINDEEPSENTINEL"


class ChatTemplateWarning(UserWarning):
    """The tokenizer has no chat template, so skindeep's plain fallback template is used."""


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a (non-empty) chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def warn_fallback(tokenizer: Any, stacklevel: int = 3) -> None:
    """Warn (ChatTemplateWarning) that `tokenizer` has no template and the fallback is used."""
    warnings.warn(
        f"{type(tokenizer).__name__} has no chat template; using skindeep's fallback "
        "'### User: / ### Assistant:' format",
        ChatTemplateWarning,
        stacklevel=stacklevel,
    )


def format_user_turn(tokenizer: Any, user: str, system: str | None = None) -> str:
    """One user turn (after an optional system turn) with the generation prompt, as text.

    The tokenizer's chat template when it has one (a template that rejects a system role gets
    the system text prepended to the user message), else skindeep's fallback format.
    """
    if not has_chat_template(tokenizer):
        head = FALLBACK_SYSTEM.format(system=system) if system else ""
        return head + FALLBACK_TEMPLATE.format(user=user)
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    except TemplateError:
        if not system:
            raise
        return format_user_turn(tokenizer, f"{system}\n\n{user}")


def format_conversation(
    tokenizer: Any, user: str, assistant: str, system: str | None = None
) -> str:
    """A whole exchange (user turn, then the assistant's reply) as text, for training.

    Through the chat template when there is one; otherwise the fallback user turn followed by
    the reply and the EOS token. Same system-role handling as `format_user_turn`.
    """
    if not has_chat_template(tokenizer):
        return format_user_turn(tokenizer, user, system) + assistant + (tokenizer.eos_token or "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    except TemplateError:
        if not system:
            raise
        return format_conversation(tokenizer, f"{system}\n\n{user}", assistant)


def format_prompts(
    tokenizer: Any, prompts: Sequence[str], fmt: PromptFormat = "chat", system: str | None = None
) -> list[str]:
    """Model inputs: each prompt as is (`raw`) or as one chat user turn (`chat`).

    In chat format without a template this warns (ChatTemplateWarning) and uses the fallback.
    """
    if fmt == "raw":
        return list(prompts)
    if fmt != "chat":
        raise ValueError(f"fmt must be 'chat' or 'raw', got {fmt!r}")
    if not has_chat_template(tokenizer):
        warn_fallback(tokenizer)
    return [format_user_turn(tokenizer, p, system) for p in prompts]


def post_instruction_tokens(tokenizer: Any, system: str | None = None) -> list[int]:
    """Token ids the chat format puts after the user message (Arditi's post-instruction span).

    Found generically: format a sentinel message and keep the tokens that start after it.
    """
    text = format_user_turn(tokenizer, _SENTINEL, system)
    end = text.rfind(_SENTINEL) + len(_SENTINEL)
    if end < len(_SENTINEL):
        raise ValueError("the chat template dropped the user message; cannot locate its end")
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        pairs = zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        return [int(i) for i, (start, _stop) in pairs if start >= end]
    return [int(i) for i in tokenizer(text[end:], add_special_tokens=False)["input_ids"]]
