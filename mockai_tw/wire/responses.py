"""``response`` objects and the Responses API's named-event stream.

A stream is ``event: <type>`` + ``data: <json>`` per event, ``sequence_number``
counting from 0, and no ``[DONE]``: it ends with ``response.completed`` (or
``response.incomplete``).  Every field the ``Response`` schema requires is
sent, echoing the request; ``output_text`` is left to the SDKs, as OpenAI
leaves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from mockai_tw.engine.plan import (
    CallOutput,
    ListedItem,
    MessageOutput,
    OutputItem,
    ResponsePlan,
    TokenLogprob,
    Usage,
)
from mockai_tw.wire.chat import logprob_json
from mockai_tw.wire.sse import named_event

if TYPE_CHECKING:
    from mockai_tw.request.responses import ListParams, ResponsesRequest


#: The statuses of a response that has its output.
FINISHED = ("completed", "incomplete")


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _format_json(request: ResponsesRequest) -> dict[str, Any]:
    fmt = request.text_format
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    out: dict[str, Any] = {
        "type": "json_schema",
        "name": fmt.name,
        "schema": fmt.schema,
        "strict": fmt.strict,
    }
    if request.format_description is not None:
        out["description"] = request.format_description
    return out


def _delta_logprob(entry: TokenLogprob) -> dict[str, Any]:
    """A delta event's logprob: like a content part's, without ``bytes``."""
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "top_logprobs": [{"token": t.token, "logprob": t.logprob} for t in entry.top],
    }


def _text_part(item: MessageOutput, text: str) -> dict[str, Any]:
    logprobs = [logprob_json(e) for e in item.logprobs or ()]
    return {
        "type": "output_text",
        "text": text,
        "annotations": [],
        "logprobs": logprobs if text else [],
    }


def item_json(item: OutputItem, done: bool = True) -> dict[str, Any]:
    """An output item, whole (``done``) or as ``output_item.added`` shows it."""
    status = item.status if done else "in_progress"
    if isinstance(item, MessageOutput):
        return {
            "id": item.id,
            "type": "message",
            "status": status,
            "content": [_text_part(item, item.text)] if done else [],
            "role": "assistant",
        }
    call = item.call
    return {
        "id": item.id,
        "type": "function_call",
        "status": status,
        "arguments": call.arguments if done else "",
        "call_id": call.id,
        "name": call.name,
    }


def response_json(plan: ResponsePlan, done: bool = True) -> dict[str, Any]:
    """The ``response`` object: final, or the snapshot a stream opens with."""
    request = plan.request
    # A background response's snapshot (queued, in_progress, cancelled)
    # shows no output yet, as a stream's first snapshot does.
    status = plan.status if done else "in_progress"
    done = done and status in FINISHED
    reason = plan.incomplete_reason if done else None
    out: dict[str, Any] = {
        "id": plan.id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "background": request.background,
        "completed_at": plan.completed_at if done and status == "completed" else None,
        "conversation": (
            {"id": request.conversation} if request.conversation else None
        ),
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": plan.model,
        "output": [item_json(o) for o in plan.output] if done else [],
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": request.prompt_cache_key,
        "reasoning": {
            "effort": request.reasoning_effort,
            "summary": request.reasoning_summary,
        },
        "safety_identifier": request.safety_identifier,
        "service_tier": "default"
        if request.service_tier in (None, "auto")
        else request.service_tier,
        "store": request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": _format_json(request), "verbosity": request.verbosity},
        "tool_choice": request.tool_choice_json,
        "tools": list(request.tools),
        "top_logprobs": request.top_logprobs or 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": request.truncation,
        "metadata": dict(request.metadata or {}),
    }
    if done:
        out["usage"] = usage_json(plan.usage)
    if request.user is not None:
        out["user"] = request.user
    return out


def response_body(plan: ResponsePlan) -> bytes:
    """The whole non-streamed ``response`` object."""
    return orjson.dumps(response_json(plan))


def deleted_body(response_id: str) -> bytes:
    return orjson.dumps(
        {"id": response_id, "object": "response.deleted", "deleted": True}
    )


def _input_item_json(listed: ListedItem) -> dict[str, Any]:
    """An input item as a stored resource: ids, statuses, content as parts."""
    item = listed.item
    raw = item.raw
    if item.type == "function_call":
        return {
            "id": listed.id,
            "type": "function_call",
            "status": "completed",
            "arguments": item.arguments,
            "call_id": item.call_id,
            "name": item.name,
        }
    if item.type == "function_call_output":
        return {
            "id": listed.id,
            "type": "function_call_output",
            "status": "completed",
            "call_id": item.call_id,
            "output": raw.get("output"),
        }
    content = raw.get("content")
    if item.role == "assistant":
        if isinstance(content, str):
            content = [{"type": "output_text", "text": content}]
        parts = [
            {"annotations": [], "logprobs": [], **p}
            if p.get("type") == "output_text"
            else p
            for p in content or ()
        ]
        return {
            "id": listed.id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": parts,
        }
    if isinstance(content, str):
        content = [{"type": "input_text", "text": content}]
    return {
        "id": listed.id,
        "type": "message",
        "status": "completed",
        "role": item.role,
        "content": content,
    }


def input_items_body(plan: ResponsePlan, params: ListParams) -> bytes:
    """A page of ``GET /v1/responses/{id}/input_items`` (newest first by default)."""
    items = list(plan.input_items)
    if params.order == "desc":
        items.reverse()
    if params.after is not None:
        ids = [i.id for i in items]
        items = items[ids.index(params.after) + 1 :] if params.after in ids else []
    page = items[: params.limit]
    return orjson.dumps(
        {
            "object": "list",
            "data": [_input_item_json(i) for i in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(items) > len(page),
        }
    )


class _Events:
    """Numbers and frames the events of one stream."""

    def __init__(self) -> None:
        self.sequence = itertools.count()

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(self.sequence), **fields}
        return named_event(kind, orjson.dumps(payload))


def _message_events(
    event: _Events, item: MessageOutput, index: int
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(opening events, one delta per piece, closing events) of a message."""
    where = {"item_id": item.id, "output_index": index, "content_index": 0}
    opening = [
        event(
            "response.output_item.added",
            output_index=index,
            item=item_json(item, False),
        ),
        event("response.content_part.added", **where, part=_text_part(item, "")),
    ]
    logprobs = item.logprobs
    deltas = [
        event(
            "response.output_text.delta",
            **where,
            delta=piece,
            logprobs=[] if logprobs is None else [_delta_logprob(logprobs[i])],
        )
        for i, piece in enumerate(item.pieces)
    ]
    text = item.text
    closing = [
        event(
            "response.output_text.done",
            **where,
            text=text,
            logprobs=[_delta_logprob(e) for e in logprobs or ()],
        ),
        event("response.content_part.done", **where, part=_text_part(item, text)),
        event("response.output_item.done", output_index=index, item=item_json(item)),
    ]
    return opening, deltas, closing


def _call_events(
    event: _Events, item: CallOutput, index: int
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    where = {"item_id": item.id, "output_index": index}
    opening = [
        event(
            "response.output_item.added",
            output_index=index,
            item=item_json(item, False),
        )
    ]
    deltas = [
        event("response.function_call_arguments.delta", **where, delta=fragment)
        for fragment in item.call.fragments
    ]
    closing = [
        event(
            "response.function_call_arguments.done",
            **where,
            name=item.call.name,
            arguments=item.call.arguments,
        ),
        event("response.output_item.done", output_index=index, item=item_json(item)),
    ]
    return opening, deltas, closing


def response_stream(plan: ResponsePlan) -> Iterator[tuple[float, bytes]]:
    """Each SSE event of the stream with the time (from start) it is due.

    ``response.created`` and ``response.in_progress`` go out at once; then the
    items, their deltas paced step by step as chat paces its chunks (a later
    item's opening takes a step, as a later tool call's does in chat).
    Events are built item by item, in wire order, so sequence numbers follow it.
    """
    event = _Events()
    snapshot = response_json(plan, done=False)
    pacing = plan.pacing
    running_at = 0.0
    if plan.request.background:
        # Queued first; in progress when its first token is due.
        queued = {**snapshot, "status": "queued"}
        yield 0.0, event("response.created", response=queued)
        yield 0.0, event("response.queued", response=queued)
        running_at = pacing.first_s
    else:
        yield 0.0, event("response.created", response=snapshot)
    yield running_at, event("response.in_progress", response=snapshot)
    step = 0
    for index, item in enumerate(plan.output):
        if index:
            opened_at = pacing.due(step)
            step += 1
        else:
            opened_at = pacing.due(0)
        if isinstance(item, MessageOutput):
            opening, deltas, closing = _message_events(event, item, index)
        else:
            opening, deltas, closing = _call_events(event, item, index)
        for data in opening:
            yield opened_at, data
        for data in deltas:
            yield pacing.due(step), data
            step += 1
        closed_at = pacing.due(max(step - 1, 0))
        for data in closing:
            yield closed_at, data
    final = (
        "response.completed" if plan.status == "completed" else "response.incomplete"
    )
    yield pacing.due(max(step - 1, 0)), event(final, response=response_json(plan))
