"""The one tokenizer: counts usage and splits replies into token pieces.

An approximation of OpenAI's BPE encodings that needs no data files: text is
pre-split the way cl100k/o200k pre-split it (contractions, letter runs with
their leading space, digit groups of up to three, punctuation runs,
whitespace), each CJK character is one token, and letter runs longer than six
characters are cut into pieces of about five.  Pieces always concatenate back
to the input, so ``token`` chunking never loses a character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_CJK = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
)

_PRE_SPLIT = re.compile(
    rf"""'(?:[sdmt]|ll|ve|re)(?![^\W\d_])
       |[{_CJK}]
       |\ ?(?:(?![{_CJK}])[^\W\d_])+
       |\ ?\d{{1,3}}
       |\ ?(?:(?![{_CJK}])[^\s\w])+[\r\n]*
       |\s*[\r\n]+
       |\s+(?!\S)
       |\s+""",
    re.VERBOSE | re.IGNORECASE,
)

_LONG_WORD = 6
_WORD_PIECE = 5


def _split_long(piece: str) -> Iterable[str]:
    letters = len(piece.lstrip(" "))
    if letters <= _LONG_WORD:
        yield piece
        return
    parts = -(-letters // _WORD_PIECE)
    size = -(-len(piece) // parts)
    for start in range(0, len(piece), size):
        yield piece[start : start + size]


def pieces(text: str) -> list[str]:
    """Split ``text`` into token-sized pieces that join back to ``text``."""
    out: list[str] = []
    for match in _PRE_SPLIT.finditer(text):
        piece = match.group()
        if piece[-1:].isalpha() and len(piece) > _LONG_WORD:
            out.extend(_split_long(piece))
        else:
            out.append(piece)
    return out


def count(text: str) -> int:
    """How many tokens ``text`` is."""
    if not text:
        return 0
    return len(pieces(text))


# OpenAI's chat accounting: every message costs a few tokens of framing, and
# the reply is primed with ``<|start|>assistant<|message|>``.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_IMAGE = 85


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if isinstance(part.get("text"), str):
                total += count(part["text"])
            elif part.get("type") in ("image_url", "input_image"):
                total += TOKENS_PER_IMAGE
            elif isinstance(part.get("refusal"), str):
                total += count(part["refusal"])
    return total


def _json_tokens(value: Any) -> int:
    """Tokens of a structured value (tool calls, tool definitions)."""
    if isinstance(value, str):
        return count(value)
    if isinstance(value, Mapping):
        return sum(count(str(k)) + _json_tokens(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_json_tokens(v) for v in value)
    if value is None:
        return 0
    return count(str(value))


def count_messages(
    messages: Iterable[Mapping[str, Any]], tools: Iterable[Any] = ()
) -> int:
    """Prompt tokens of a chat request, per OpenAI's per-message accounting."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += count(str(message.get("role", "")))
        total += _content_tokens(message.get("content"))
        name = message.get("name")
        if isinstance(name, str):
            total += TOKENS_PER_NAME + count(name)
        if message.get("tool_calls"):
            total += _json_tokens(message["tool_calls"])
        if message.get("function_call"):
            total += _json_tokens(message["function_call"])
    tool_list = list(tools)
    if tool_list:
        # The tool definitions are rendered into a hidden system message.
        total += TOKENS_PER_MESSAGE + _json_tokens(tool_list)
    return total
