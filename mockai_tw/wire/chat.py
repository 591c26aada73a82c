"""``chat.completion`` bodies and ``chat.completion.chunk`` streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Usage
from mockai_tw.wire.sse import DONE, data_event

# What the original server (and Azure) attach to every choice.
CONTENT_FILTER_RESULTS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice(plan: ChatPlan, choice: ChoicePlan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": choice.index,
        "message": {
            "role": "assistant",
            "content": choice.text,
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": choice.finish_reason,
    }
    if plan.content_filter:
        out["content_filter_results"] = CONTENT_FILTER_RESULTS
    return out


def chat_completion(plan: ChatPlan) -> bytes:
    """The whole non-streamed ``chat.completion`` object."""
    return orjson.dumps(
        {
            "id": plan.id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [_choice(plan, c) for c in plan.choices],
            "usage": usage_json(plan.usage),
            "service_tier": plan.service_tier,
            "system_fingerprint": plan.system_fingerprint,
        }
    )


class _ChunkRenderer:
    """Renders chunks of one stream; the envelope is encoded once per stream."""

    def __init__(self, plan: ChatPlan) -> None:
        head = orjson.dumps(
            {
                "id": plan.id,
                "object": "chat.completion.chunk",
                "created": plan.created,
                "model": plan.model,
                "service_tier": plan.service_tier,
                "system_fingerprint": plan.system_fingerprint,
            }
        )
        self.head = head[:-1] + b',"choices":['
        self.tail = b'],"usage":null}' if plan.include_usage else b"]}"
        self.filter = CONTENT_FILTER_RESULTS if plan.content_filter else None

    def choice(
        self, index: int, delta: dict[str, Any], finish_reason: str | None = None
    ) -> bytes:
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if self.filter is not None:
            choice["content_filter_results"] = self.filter
        return data_event(self.head + orjson.dumps(choice) + self.tail)


def chat_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    """Each SSE event of the stream with the time (from start) it is due.

    Choices interleave step by step, as OpenAI interleaves ``n > 1``.
    """
    render = _ChunkRenderer(plan)
    pacing = plan.pacing
    start = pacing.due(0)
    for choice in plan.choices:
        yield (
            start,
            render.choice(
                choice.index, {"role": "assistant", "content": "", "refusal": None}
            ),
        )
    steps = max((len(c.pieces) for c in plan.choices), default=0)
    for step in range(steps):
        due = pacing.due(step)
        for choice in plan.choices:
            if step < len(choice.pieces):
                yield due, render.choice(choice.index, {"content": choice.pieces[step]})
    end = pacing.due(max(steps - 1, 0))
    for choice in plan.choices:
        yield end, render.choice(choice.index, {}, choice.finish_reason)
    if plan.include_usage:
        usage = orjson.dumps(usage_json(plan.usage))
        yield end, data_event(render.head + b'],"usage":' + usage + b"}")
    yield end, DONE
