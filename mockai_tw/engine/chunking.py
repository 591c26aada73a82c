"""How a reply is cut into stream chunks: by character, word or token."""

from __future__ import annotations

import re

from mockai_tw.engine import tokenizer

_WORD = re.compile(rf"\s*(?:[{tokenizer._CJK}]|(?:(?![{tokenizer._CJK}])\S)+)|\s+")


def chunk(text: str, mode: str, model: str | None = None) -> tuple[str, ...]:
    """Pieces that join back to ``text``; ``char`` is the original's one per chunk."""
    if not text:
        return ()
    if mode == "char":
        return tuple(text)
    if mode == "word":
        return tuple(_WORD.findall(text))
    if mode == "token":
        return tuple(tokenizer.pieces(text, model))
    raise ValueError(f"unknown chunking {mode!r}")
