"""Embeddings: deterministic unit vectors that behave like real ones.

A vector is built from its text alone (and the model), so the same text gets
the same vector on every call and every server, while texts that share words
come out closer (by cosine) than texts that share none:

- a sparse part, feature hashing of word unigrams and character trigrams
  (token ids and id bigrams for token-array input) into the model's native
  dimension, each feature's slot and sign from a blake2b keyed by the model;
- a dense, text-specific part: the model's fixed random unit vector, rotated
  cyclically by an offset hashed from the text (about 10% of the energy).

The two are mixed so the result is exactly unit length without a pass over
every coordinate: the dense part is one ``memcpy`` of a pre-scaled array and
only the sparse slots are touched, which keeps a 3072-d vector in a few
microseconds.  ``dimensions`` truncates the native vector and renormalises,
as text-embedding-3 does, so a short vector is the prefix of the long one.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
from array import array
from functools import lru_cache

from mockai_tw.engine import tokenizer
from mockai_tw.engine.plan import EmbeddingsPlan
from mockai_tw.errors import invalid
from mockai_tw.request.common import out_of_range
from mockai_tw.request.embeddings import EmbeddingInput, EmbeddingsRequest

NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "gemini-embedding-001": 3072,
    "text-embedding-004": 768,
}
DEFAULT_DIMENSIONS = 1536
# Models that refuse ``dimensions`` (it came with text-embedding-3).
FIXED_DIMENSIONS = frozenset({"text-embedding-ada-002"})
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000

# The dense part's share of the vector (its squared length).
_DENSE = math.sqrt(0.1)
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.5
_TOKEN_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_SLOT_CACHE = 1 << 16

_WORD = re.compile(r"\w+")


def native_dimensions(model: str) -> int:
    return NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)


class _Space:
    """One model's space: its random base vector and its feature slots."""

    def __init__(self, model: str, native: int) -> None:
        self.native = native
        key = hashlib.blake2b(model.encode(), digest_size=32).digest()
        self.hasher = hashlib.blake2b(digest_size=8, key=key)
        rng = random.Random(key)
        raw = [rng.gauss(0.0, 1.0) for _ in range(native)]
        norm = math.sqrt(math.fsum(x * x for x in raw))
        unit = [x / norm for x in raw]
        # Doubled, so any cyclic rotation is one slice.
        self.base = array("d", unit + unit)
        self.scaled = array("f", [_DENSE * x for x in self.base])
        cumulative = [0.0]
        for x in self.base:
            cumulative.append(cumulative[-1] + x * x)
        self.cumsq = array("d", cumulative)
        self.slots: dict[str, int] = {}

    def _hash(self, data: bytes) -> int:
        h = self.hasher.copy()
        h.update(data)
        return int.from_bytes(h.digest(), "little")

    def slot(self, feature: str) -> int:
        """The feature's index, bit-inverted (``~i``) when its sign is negative."""
        slot = self.slots.get(feature)
        if slot is None:
            if len(self.slots) >= _SLOT_CACHE:
                self.slots.clear()
            value = self._hash(feature.encode())
            index = (value >> 1) % self.native
            slot = self.slots[feature] = index if value & 1 else ~index
        return slot

    def offset(self, data: bytes) -> int:
        return self._hash(b"\0rotate\0" + data) % self.native


@lru_cache(maxsize=16)
def _space(model: str, native: int) -> _Space:
    return _Space(model, native)


def _add(features: dict[int, float], slot: int, weight: float) -> None:
    if slot >= 0:
        features[slot] = features.get(slot, 0.0) + weight
    else:
        features[~slot] = features.get(~slot, 0.0) - weight


def _text_features(space: _Space, text: str) -> dict[int, float]:
    lower = text.lower()
    features: dict[int, float] = {}
    slot = space.slot
    for word in _WORD.findall(lower):
        _add(features, slot("w" + word), _WORD_WEIGHT)
    padded = " " + " ".join(lower.split()) + " "
    for i in range(len(padded) - 2):
        _add(features, slot("c" + padded[i : i + 3]), _TRIGRAM_WEIGHT)
    return features


def _token_features(space: _Space, tokens: tuple[int, ...]) -> dict[int, float]:
    features: dict[int, float] = {}
    slot = space.slot
    for token in tokens:
        _add(features, slot(f"t{token}"), _TOKEN_WEIGHT)
    for a, b in itertools.pairwise(tokens):
        _add(features, slot(f"b{a},{b}"), _BIGRAM_WEIGHT)
    return features


def _mix(
    space: _Space, features: dict[int, float], off: int, dims: int
) -> array[float]:
    """``dense * rotated base + gamma * features``, unit length, first ``dims``."""
    base = space.base
    q = math.fsum(s * s for s in features.values())
    if q > 0.0:
        alpha = _DENSE
        p = math.fsum(base[off + i] * s for i, s in features.items())
        # The positive root of |alpha*B + gamma*S|^2 = 1.
        gamma = (-alpha * p + math.sqrt(alpha * alpha * p * p + q * (1 - alpha**2))) / q
    else:
        alpha, gamma = 1.0, 0.0
    if dims >= space.native:
        out = (
            space.scaled[off : off + dims]
            if alpha == _DENSE
            else array("f", base[off : off + dims])
        )
        for i, s in features.items():
            out[i] = alpha * base[off + i] + gamma * s
        return out
    # Truncated: the native vector's prefix, renormalised.
    kept = {i: s for i, s in features.items() if i < dims}
    squared = (
        alpha * alpha * (space.cumsq[off + dims] - space.cumsq[off])
        + 2 * alpha * gamma * math.fsum(base[off + i] * s for i, s in kept.items())
        + gamma * gamma * math.fsum(s * s for s in kept.values())
    )
    norm = math.sqrt(squared) if squared > 0.0 else 1.0
    scale = alpha / norm
    out = array("f", [x * scale for x in base[off : off + dims]])
    for i, s in kept.items():
        out[i] = (alpha * base[off + i] + gamma * s) / norm
    return out


def embed(
    model: str, item: EmbeddingInput, dimensions: int | None = None
) -> array[float]:
    """The unit vector (float32) for one input: the same input, the same vector."""
    native = native_dimensions(model)
    space = _space(model, native)
    if isinstance(item, str):
        features = _text_features(space, item)
        off = space.offset(b"s" + item.encode())
    else:
        features = _token_features(space, item)
        off = space.offset(b"t" + ",".join(map(str, item)).encode())
    return _mix(space, features, off, min(dimensions or native, native))


def _check_dimensions(model: str, dimensions: int | None) -> None:
    if dimensions is None:
        return
    if model in FIXED_DIMENSIONS:
        raise invalid(
            "This model does not support specifying dimensions.", param="dimensions"
        )
    native = native_dimensions(model)
    if dimensions > native:
        raise out_of_range(
            "dimensions", f"{dimensions} is greater than the maximum of {native}."
        )


def _tokens(model: str, item: EmbeddingInput) -> int:
    if isinstance(item, str):
        return tokenizer.count(item, model)
    return len(item)


def embeddings(request: EmbeddingsRequest) -> EmbeddingsPlan:
    """The whole answer: one vector per input, and the tokens they cost."""
    model = request.model
    _check_dimensions(model, request.dimensions)
    total = 0
    for i, item in enumerate(request.inputs):
        tokens = _tokens(model, item)
        if tokens > MAX_INPUT_TOKENS:
            where = "'input'" if len(request.inputs) == 1 else f"'input[{i}]'"
            raise invalid(
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens,"
                f" however you requested {tokens} tokens in {where}. Please reduce"
                " your prompt.",
                param="input",
            )
        total += tokens
    if total > MAX_REQUEST_TOKENS:
        raise invalid(
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            param="input",
            code="max_tokens_per_request",
        )
    return EmbeddingsPlan(
        model=model,
        vectors=tuple(embed(model, x, request.dimensions) for x in request.inputs),
        prompt_tokens=total,
        encoding_format=request.encoding_format,
    )
