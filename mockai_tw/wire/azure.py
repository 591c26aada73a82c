"""The Azure OpenAI flavour of the chat and legacy completions wire formats.

Azure sends OpenAI's objects plus content-filter annotations. Rather than a
second copy of each renderer, this wraps them: the per-choice
``content_filter_results`` is the plan's ``content_filter`` option, the
``prompt_filter_results`` are spliced into the body, and a stream is
prefixed with the annotation-only chunk Azure sends first
(``"choices": []``, with an empty ``id``, ``object`` and ``model`` and
``created`` 0: what clients that index ``choices[0]`` trip over).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson

from mockai_tw.engine.plan import ChatPlan, CompletionPlan
from mockai_tw.wire import chat, completions
from mockai_tw.wire.envelope import CONTENT_FILTER_RESULTS
from mockai_tw.wire.sse import data_event

Event = tuple[float, bytes]


def prompt_filter_results(prompts: int) -> list[dict[str, Any]]:
    return [
        {"prompt_index": i, "content_filter_results": CONTENT_FILTER_RESULTS}
        for i in range(prompts)
    ]


def with_prompt_filter(body: bytes, prompts: int) -> bytes:
    """Add ``prompt_filter_results`` to a rendered JSON object."""
    extra = orjson.dumps(prompt_filter_results(prompts))
    return body[:-1] + b',"prompt_filter_results":' + extra + b"}"


def filter_chunk(prompts: int) -> bytes:
    """The annotation-only event an Azure stream starts with."""
    return data_event(
        orjson.dumps(
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": prompt_filter_results(prompts),
            }
        )
    )


def _stream(events: Iterator[Event], prompts: int, due: float) -> Iterator[Event]:
    yield due, filter_chunk(prompts)
    yield from events


def chat_completion(plan: ChatPlan) -> bytes:
    body = chat.chat_completion(dataclasses.replace(plan, content_filter=True))
    return with_prompt_filter(body, 1)


def chat_stream(plan: ChatPlan) -> Iterator[Event]:
    plan = dataclasses.replace(plan, content_filter=True)
    events = chat.chat_stream(plan)
    return _stream(events, 1, plan.pacing.due(0))


def completion(plan: CompletionPlan) -> bytes:
    body = completions.completion(dataclasses.replace(plan, content_filter=True))
    return with_prompt_filter(body, plan.prompts)


def completion_stream(plan: CompletionPlan) -> Iterator[Event]:
    plan = dataclasses.replace(plan, content_filter=True)
    return _stream(
        completions.completion_stream(plan), plan.prompts, plan.pacing.due(0)
    )


def error_body(code: str, message: str) -> bytes:
    """Azure's own error shape (auth, routing, api-version): no type, no param."""
    return orjson.dumps({"error": {"code": code, "message": message}})
