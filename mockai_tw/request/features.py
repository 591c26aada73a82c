"""Provider features the engine plans for: reasoning and cached prompts.

A leaf both sides read: the Anthropic and Gemini request models build these
values, the engine plans from them; it knows neither provider.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thinking:
    """Reason before answering, within ``budget`` tokens (None: the model
    decides, as Gemini's dynamic budget); ``shown``: the reasoning's text is
    sent, not only counted."""

    budget: int | None = None
    shown: bool = True


@dataclass(frozen=True)
class PromptSegment:
    """One block of a prompt in the order a prompt cache reads it (tools,
    system, messages): ``key`` is the block as it would be cached, ``text``
    what the tokenizer counts of it, ``tokens`` what it costs besides (an
    image), ``ttl_s`` set when the block ends a cached prefix."""

    key: bytes
    text: str = ""
    tokens: int = 0
    ttl_s: float | None = None
