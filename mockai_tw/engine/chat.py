"""Chat completions: what to answer, as a ChatPlan.

Pure: the caller passes the time; randomness comes from the engine's own
``random.Random`` (seeded from the config) or from the request's ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from mockai_tw.config import Config
from mockai_tw.engine import tokenizer
from mockai_tw.engine.chunking import chunk
from mockai_tw.engine.ids import new_id
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.request.chat import ChatRequest


def apply_limits(
    text: str, stop: Sequence[str], max_tokens: int | None
) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence, then at ``max_tokens``."""
    finish = "stop"
    cuts = [text.find(s) for s in stop if s]
    cuts = [c for c in cuts if c >= 0]
    if cuts:
        text = text[: min(cuts)]
    if max_tokens is not None:
        pieces = tokenizer.pieces(text)
        if len(pieces) > max_tokens:
            text = "".join(pieces[:max_tokens])
            finish = "length"
    return text, finish


class Engine:
    """Holds the config and the reply picker's random state."""

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random(config.seed)

    def picker(self, seed: int | None, *key: str) -> random.Random:
        """The engine's random state, or one derived from a request's ``seed``.

        With a seed, the same seed and key (model, prompt...) give the same
        picks on every endpoint.
        """
        if seed is None:
            return self.rng
        return random.Random("\0".join((str(seed), *key)))

    def reply_text(self, rng: random.Random) -> str:
        """The text of one reply: a pick from the configured ``replies``."""
        return rng.choice(self.config.replies)

    def chat(self, request: ChatRequest, now: float) -> ChatPlan:
        stream = self.config.stream
        rng = self.picker(request.seed, request.model, request.last_user_text)
        choices = []
        completion_tokens = 0
        for index in range(request.n):
            text = self.reply_text(rng)
            text, finish = apply_limits(text, request.stop, request.max_tokens)
            completion_tokens += tokenizer.count(text)
            choices.append(ChoicePlan(index, chunk(text, stream.chunking), finish))
        prompt_tokens = tokenizer.count_messages(
            (m.raw for m in request.messages), request.tools
        )
        return ChatPlan(
            id=new_id("chatcmpl-"),
            created=int(now),
            model=request.model,
            system_fingerprint=self.config.system_fingerprint,
            choices=tuple(choices),
            usage=Usage(prompt_tokens, completion_tokens),
            stream=request.stream,
            include_usage=request.include_usage,
            content_filter=stream.content_filter_results,
            pacing=Pacing(0.0, stream.interval_ms / 1000.0),
        )
