"""How a reply is cut into stream chunks: by character, word or token."""

from __future__ import annotations

import re
from functools import lru_cache

from mockai_tw.engine import tokenizer

_WORD = re.compile(rf"\s*(?:[{tokenizer._CJK}]|(?:(?![{tokenizer._CJK}])\S)+)|\s+")


def chunk(text: str, mode: str, model: str | None = None) -> tuple[str, ...]:
    """Pieces that join back to ``text``; ``char`` is the original's one per chunk."""
    if len(text) <= tokenizer.CACHED_TEXT:
        # Canned replies repeat on every request: cut each once.
        return _cached(text, mode, model)
    return _chunk(text, mode, model)


@lru_cache(maxsize=4096)
def _cached(text: str, mode: str, model: str | None) -> tuple[str, ...]:
    return _chunk(text, mode, model)


def _chunk(text: str, mode: str, model: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    if mode == "char":
        return tuple(text)
    if mode == "word":
        return tuple(_WORD.findall(text))
    if mode == "token":
        return tuple(tokenizer.pieces(text, model))
    raise ValueError(f"unknown chunking {mode!r}")
