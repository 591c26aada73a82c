"""Moderations: flags from the configured word lists, scores that agree.

A category is flagged when one of its words (or phrases) appears in the text,
whole-word and in any case; a subcategory's hit counts for its parent too
(``self-harm/intent`` flags ``self-harm``), as OpenAI's taxonomy nests them.
Scores are deterministic per (category, text): at or above the threshold for
a hit, rising with the number of hits, and tiny otherwise, so clients that
apply their own cut-off to ``category_scores`` see the same verdict.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from mockai_tw.config import MODERATION_CATEGORIES, ModerationConfig
from mockai_tw.engine.ids import new_id
from mockai_tw.engine.plan import ModerationPlan, ModerationResult
from mockai_tw.errors import invalid
from mockai_tw.request.moderations import ModerationInput, ModerationRequest

# The categories OpenAI also scores on images (the rest are text-only).
IMAGE_CATEGORIES = frozenset(
    {
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    }
)
# The legacy models read text only.
TEXT_ONLY_PREFIX = "text-moderation"


@lru_cache(maxsize=256)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex per word list, compiled once (config lists are tuples)."""
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def hits(config: ModerationConfig, text: str) -> dict[str, int]:
    """How often each category's words occur; children count for parents."""
    out = {}
    for category in MODERATION_CATEGORIES:
        pattern = _pattern(config.categories.get(category, ()))
        out[category] = len(pattern.findall(text)) if pattern and text else 0
    for category in MODERATION_CATEGORIES:
        parent, _, child = category.partition("/")
        if child:
            out[parent] += out[category]
    return out


def _unit(category: str, text: str) -> float:
    """A stable number in [0, 1) for this category and text."""
    digest = hashlib.blake2b(
        f"{category}\0{text}".encode(), digest_size=8, person=b"mockai-mod"
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def score(threshold: float, count: int, category: str, text: str) -> float:
    u = _unit(category, text)
    if count:
        return threshold + (1.0 - threshold) * (1.0 - 0.5**count * (0.4 + 0.4 * u))
    return min(10.0 ** (-6.0 + 3.0 * u), threshold / 2)


def _applied(item: ModerationInput) -> dict[str, tuple[str, ...]]:
    text = ("text",) if item.has_text else ()
    with_image = (*text, "image") if item.images else text
    return {
        c: with_image if c in IMAGE_CATEGORIES else text for c in MODERATION_CATEGORIES
    }


def classify(config: ModerationConfig, item: ModerationInput) -> ModerationResult:
    counts = hits(config, item.text)
    threshold = config.threshold
    scores = {c: score(threshold, n, c, item.text) for c, n in counts.items()}
    flags = {c: s >= threshold for c, s in scores.items()}
    return ModerationResult(
        flagged=any(flags.values()),
        categories=flags,
        category_scores=scores,
        applied_input_types=_applied(item),
    )


def moderate(config: ModerationConfig, request: ModerationRequest) -> ModerationPlan:
    """One result per input, as OpenAI answers."""
    model = request.model
    if model.startswith(TEXT_ONLY_PREFIX) and any(i.images for i in request.inputs):
        raise invalid(
            f"The model '{model}' does not support image inputs; use"
            " omni-moderation-latest.",
            param="input",
        )
    return ModerationPlan(
        id=new_id("modr-"),
        model=model,
        results=tuple(classify(config, item) for item in request.inputs),
    )
