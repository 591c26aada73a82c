"""The one tokenizer: counts usage and splits replies into token pieces.

Where the ``bpe-openai`` package is installed (the ``exact`` extra), counts
use the model's real encoding, offline: o200k_base for the gpt-4o, gpt-4.1,
o-series and newer models, cl100k_base for gpt-4, gpt-3.5 and the embedding
models.  Otherwise a deterministic approximation that needs no data files:
text is pre-split the way those encodings pre-split it (contractions, letter
runs with their leading space, digit groups of up to three, punctuation runs,
whitespace), CJK letters cost one token each (two per three on o200k), and
letter runs longer than nine characters are cut into pieces of about six.
``benchmarks/tokenizer_error.py`` measures its error against the real ones.
Either way, pieces always concatenate back to the input, so ``token``
chunking never loses a character.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any, Protocol

from mockai_tw.tables import remember

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

# Texts up to this long are tokenized once and remembered.
CACHED_TEXT = 2048
# Counts of that many such texts are kept per tokenizer before starting again.
CACHED_COUNTS = 4096

_LONG_WORD = 9
_WORD_PIECE = 6


def _split_long(piece: str) -> Iterable[str]:
    letters = len(piece.lstrip(" "))
    if letters <= _LONG_WORD:
        yield piece
        return
    parts = -(-letters // _WORD_PIECE)
    size = -(-len(piece) // parts)
    for start in range(0, len(piece), size):
        yield piece[start : start + size]


def approximate_pieces(text: str, pair_cjk: bool = False) -> list[str]:
    """Split ``text`` into token-sized pieces without any encoding data.

    ``pair_cjk`` spends two pieces on every three CJK letters, as o200k's
    larger vocabulary roughly does (cl100k spends about one per character).
    """
    out: list[str] = []
    run = 0
    for match in _PRE_SPLIT.finditer(text):
        piece = match.group()
        if len(piece) == 1 and piece in _CJK_CHARS and piece.isalpha():
            # Every third letter of a run joins the one before it.
            if pair_cjk and run % 3 == 2:
                out[-1] += piece
            else:
                out.append(piece)
            run += 1
            continue
        run = 0
        if piece[-1:].isalpha() and len(piece) > _LONG_WORD:
            out.extend(_split_long(piece))
        else:
            out.append(piece)
    return out


class _CjkSet:
    """Membership in the CJK ranges, for single characters."""

    def __contains__(self, char: object) -> bool:
        return isinstance(char, str) and _CJK_ONE.match(char) is not None


_CJK_ONE = re.compile(f"[{_CJK}]")
_CJK_CHARS = _CjkSet()


class Encoding(Protocol):
    """What we use of a ``bpe_openai`` (tiktoken-compatible) encoding."""

    def encode_ordinary(self, text: str) -> list[int]: ...
    def decode_tokens_bytes(self, tokens: list[int]) -> list[bytes]: ...


class Tokenizer:
    """Counts and pieces for one model: exact when an encoding is at hand."""

    def __init__(self, name: str, encoding: Encoding | None = None) -> None:
        self.name = name
        self.encoding = encoding
        # Roles and short prompts repeat on every request: a count is one
        # dict look-up, not a pieces cache look-up and a sum.
        self._counts: dict[str, int] = {}

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def count(self, text: str) -> int:
        known = self._counts.get(text)
        if known is not None:
            return known
        if not text:
            return 0
        found = sum(self.weighted(text)[1])
        if len(text) <= CACHED_TEXT:
            remember(self._counts, text, found, CACHED_COUNTS)
        return found

    def pieces(self, text: str) -> list[str]:
        return list(self.weighted(text)[0])

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """The longest prefix of whole pieces within ``max_tokens``; was it cut?"""
        pieces, weights = self.weighted(text)
        total = 0
        for i, weight in enumerate(weights):
            total += weight
            if total > max_tokens:
                return "".join(pieces[:i]), True
        return text, False

    def weighted(self, text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Pieces that join back to ``text``, and how many tokens each is."""
        if len(text) <= CACHED_TEXT:
            return self._cached(text)
        return self._weighted(text)

    @lru_cache(maxsize=4096)  # noqa: B019 - one Tokenizer per encoding, kept for life
    def _cached(self, text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        # Canned replies repeat on every request: tokenize each once.
        return self._weighted(text)

    def _weighted(self, text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """A token that ends inside a UTF-8 sequence is merged with the next,
        so every piece is whole characters (a CJK character split across two
        tokens is one piece of weight two)."""
        if self.encoding is None:
            pieces = tuple(approximate_pieces(text, self.name == "o200k_base"))
            return pieces, (1,) * len(pieces)
        out: list[str] = []
        weights: list[int] = []
        pending = 0
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for segment in _segments(text):
            tokens = self.encoding.encode_ordinary(segment)
            for raw in self.encoding.decode_tokens_bytes(tokens):
                pending += 1
                piece = decoder.decode(raw)
                if piece:
                    out.append(piece)
                    weights.append(pending)
                    pending = 0
        return tuple(out), tuple(weights)


# The encoder refuses very long inputs: longer texts are encoded in segments
# cut after whitespace (a token never spans one of those cuts in practice).
SEGMENT = 32 * 1024


def _segments(text: str) -> Iterable[str]:
    start = 0
    while len(text) - start > SEGMENT:
        cut = max(
            text.rfind(" ", start, start + SEGMENT),
            text.rfind("\n", start, start + SEGMENT),
        )
        cut = cut + 1 if cut > start else start + SEGMENT
        yield text[start:cut]
        start = cut
    yield text[start:]


# Model-name prefixes on o200k_base; everything else counts on cl100k_base.
_O200K = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def encoding_name(model: str) -> str:
    base = model.split(":", 2)[1] if model.startswith("ft:") else model
    return "o200k_base" if base.startswith(_O200K) else "cl100k_base"


@cache
def _encoding(name: str) -> Encoding | None:
    try:
        import bpe_openai  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        encoding: Encoding = bpe_openai.get_encoding(name)
    except Exception:
        return None
    return encoding


@cache
def for_model(model: str | None) -> Tokenizer:
    """The tokenizer for ``model`` (o200k when the model is unknown or absent)."""
    name = encoding_name(model or "gpt-4o")
    return Tokenizer(name, _encoding(name))


def warm(models: Iterable[str]) -> None:
    """Load the encodings ``models`` count with now (a second or two each),
    so the first request is not the one that waits for them."""
    for model in models:
        for_model(model)


def pieces(text: str, model: str | None = None) -> list[str]:
    """Split ``text`` into token pieces that join back to ``text``."""
    return for_model(model).pieces(text)


def count(text: str, model: str | None = None) -> int:
    """How many tokens ``text`` is for ``model``."""
    return for_model(model).count(text)


# OpenAI's chat accounting: every message costs a few tokens of framing, and
# the reply is primed with ``<|start|>assistant<|message|>``.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_IMAGE = 85


def _content_tokens(content: Any, tok: Tokenizer) -> int:
    if isinstance(content, str):
        return tok.count(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if isinstance(part.get("text"), str):
                total += tok.count(part["text"])
            elif part.get("type") in ("image_url", "input_image"):
                total += TOKENS_PER_IMAGE
            elif isinstance(part.get("refusal"), str):
                total += tok.count(part["refusal"])
    return total


def _json_tokens(value: Any, tok: Tokenizer) -> int:
    """Tokens of a structured value (tool calls, tool definitions) as JSON."""
    return tok.count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _message_tokens(message: Mapping[str, Any], tok: Tokenizer) -> int:
    """One message's tokens: its framing, role, content, name and calls."""
    total = TOKENS_PER_MESSAGE
    total += tok.count(str(message.get("role", "")))
    total += _content_tokens(message.get("content"), tok)
    name = message.get("name")
    if isinstance(name, str):
        total += TOKENS_PER_NAME + tok.count(name)
    for key in ("tool_calls", "function_call"):
        if message.get(key):
            total += _json_tokens(message[key], tok)
    return total


def count_messages(
    messages: Iterable[Mapping[str, Any]],
    tools: Iterable[Any] = (),
    model: str | None = None,
) -> int:
    """Prompt tokens of a chat request, per OpenAI's per-message accounting."""
    tok = for_model(model)
    total = REPLY_PRIMING
    for message in messages:
        if len(message) == 2:
            # The common message, a string role and content and nothing
            # else: what ``_message_tokens`` makes of it, in one line.
            role = message.get("role")
            content = message.get("content")
            if type(role) is str and type(content) is str:
                total += TOKENS_PER_MESSAGE + tok.count(role) + tok.count(content)
                continue
        total += _message_tokens(message, tok)
    tool_list = list(tools)
    if tool_list:
        # The tool definitions are rendered into a hidden system message.
        total += TOKENS_PER_MESSAGE + _json_tokens(tool_list, tok)
    return total
