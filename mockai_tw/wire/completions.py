"""``text_completion`` bodies and streams (the legacy ``/v1/completions``).

Streamed and not, OpenAI sends the same object; a stream's chunks differ only
in carrying a piece of text each and ``finish_reason: null`` until the last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from mockai_tw.engine.plan import CompletionChoice, CompletionPlan, TokenLogprob, Usage
from mockai_tw.wire.envelope import CONTENT_FILTER_RESULTS, Envelope
from mockai_tw.wire.sse import DONE


def usage_json(usage: Usage) -> dict[str, Any]:
    """The legacy endpoint's usage: the three counts, no ``*_details``."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def logprobs_json(entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    """The legacy shape: parallel lists, ``top_logprobs`` as token -> logprob maps.

    ``offset`` is where the first token starts in prompt + completion.
    """
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{t.token: t.logprob for t in e.top} for e in entries],
        "text_offset": offsets,
    }


def _choice(plan: CompletionPlan, choice: CompletionChoice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "text": choice.text,
        "index": choice.index,
        "logprobs": None
        if choice.logprobs is None
        else logprobs_json(choice.logprobs, choice.offset),
        "finish_reason": choice.finish_reason,
    }
    if plan.content_filter:
        out["content_filter_results"] = CONTENT_FILTER_RESULTS
    return out


def completion(plan: CompletionPlan) -> bytes:
    """The whole non-streamed ``text_completion`` object."""
    return orjson.dumps(
        {
            "id": plan.id,
            "object": "text_completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [_choice(plan, c) for c in plan.choices],
            "usage": usage_json(plan.usage),
            "system_fingerprint": plan.system_fingerprint,
        }
    )


class _ChunkRenderer(Envelope):
    """Renders chunks of one legacy completion stream."""

    def __init__(self, plan: CompletionPlan) -> None:
        super().__init__(
            {
                "id": plan.id,
                "object": "text_completion",
                "created": plan.created,
                "model": plan.model,
                "system_fingerprint": plan.system_fingerprint,
            },
            plan.include_usage,
            plan.content_filter,
        )

    def choice(
        self,
        index: int,
        text: str,
        logprobs: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> bytes:
        return self.event(
            {
                "text": text,
                "index": index,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        )


def completion_stream(plan: CompletionPlan) -> Iterator[tuple[float, bytes]]:
    """Each SSE event of the stream with the time (from start) it is due.

    Choices interleave step by step, as chat's do; each ends with an empty
    chunk carrying its ``finish_reason`` (and, with logprobs, empty lists, so
    a client that reads ``logprobs.tokens`` on every chunk never meets null).
    """
    render = _ChunkRenderer(plan)
    pacing = plan.pacing
    offsets = [c.offset for c in plan.choices]
    steps = max((len(c.pieces) for c in plan.choices), default=0)
    for step in range(steps):
        due = pacing.due(step)
        for n, choice in enumerate(plan.choices):
            if step < len(choice.pieces):
                piece = choice.pieces[step]
                logprobs = None
                if choice.logprobs is not None:
                    logprobs = logprobs_json(
                        choice.logprobs[step : step + 1], offsets[n]
                    )
                offsets[n] += len(piece)
                yield due, render.choice(choice.index, piece, logprobs)
    end = pacing.due(max(steps - 1, 0))
    for choice in plan.choices:
        empty = None if choice.logprobs is None else logprobs_json((), 0)
        yield end, render.choice(choice.index, "", empty, choice.finish_reason)
    if plan.include_usage:
        yield end, render.usage_event(usage_json(plan.usage))
    yield end, DONE
