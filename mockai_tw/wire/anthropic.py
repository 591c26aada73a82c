"""Anthropic's Messages API shapes: ``message`` bodies, the named-event
stream, ``count_tokens``, the error body and the ``anthropic-ratelimit-*``
headers -- all rendered from the engine's provider-neutral plans.

Pure: the stream's times are the plan's pacing, step for step as the chat
stream spends them (one step per text piece, per tool call after the first,
per argument fragment), so a rule's or a header's timing reads the same on
either API.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from mockai_tw.engine.plan import (
    ChatPlan,
    ChoicePlan,
    ModelInfo,
    TokenCount,
    ToolCallPlan,
    Usage,
)
from mockai_tw.errors import ApiError
from mockai_tw.wire.signatures import signature
from mockai_tw.wire.sse import named_event

# Anthropic's error ``type`` by HTTP status; other 4xx are invalid requests,
# other 5xx api errors.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_RATE_LIMITED = {
    "requests": "Number of requests has exceeded your per-minute rate limit",
    "tokens": "Number of request tokens has exceeded your per-minute rate limit",
}
_RATE_TAIL = (
    " (https://docs.claude.com/en/api/rate-limits); see the response headers for"
    " current usage. Please reduce the prompt length or the maximum tokens"
    " requested, or try again later."
)
_OPENAI_SORRY = "The server had an error while processing your request."


def message_id(plan: ChatPlan) -> str:
    """``msg_01…``: the plan's id under Anthropic's prefix (stable per plan)."""
    return "msg_01" + plan.id.partition("-")[2][:22]


def tool_use_id(call: ToolCallPlan) -> str:
    """``toolu_01…``: the call's id under Anthropic's prefix."""
    return "toolu_01" + call.id.partition("_")[2][:22]


def stop_reason(choice: ChoicePlan) -> str:
    if choice.tool_calls or choice.function_call is not None:
        return "tool_use"
    if choice.finish_reason == "length":
        return "max_tokens"
    if choice.finish_reason == "content_filter":
        return "refusal"
    if choice.stop_sequence is not None:
        return "stop_sequence"
    return "end_turn"


def _calls(choice: ChoicePlan) -> tuple[ToolCallPlan, ...]:
    if choice.function_call is not None:
        return (choice.function_call,)
    return choice.tool_calls


def _usage(usage: Usage, done: bool) -> dict[str, Any]:
    """``input_tokens`` is what the cache neither read nor wrote."""
    out = _input_usage(usage)
    out["cache_creation"] = {
        "ephemeral_5m_input_tokens": usage.cache_write_5m_tokens,
        "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
    }
    # ``message_start`` says 1, as the real stream does.
    out["output_tokens"] = usage.completion_tokens if done else 1
    if done:
        _thinking_tokens(out, usage)
    out["service_tier"] = "standard"
    return out


def _input_usage(usage: Usage) -> dict[str, Any]:
    written = usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
    fresh = usage.prompt_tokens - usage.cache_read_tokens - written
    return {
        "input_tokens": max(0, fresh),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def _thinking_tokens(out: dict[str, Any], usage: Usage) -> None:
    """Of the output, what thinking took (only when there was thinking)."""
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}


def _thought(plan: ChatPlan, choice: ChoicePlan) -> bool:
    return bool(choice.reasoning) and plan.reasoning_shown


def _tool_use(call: ToolCallPlan, arguments: Any) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": tool_use_id(call),
        "name": call.name,
        "input": arguments,
    }


def _blocks(plan: ChatPlan, choice: ChoicePlan) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if _thought(plan, choice):
        blocks.append(
            {
                "type": "thinking",
                "thinking": choice.reasoning_text,
                "signature": signature(plan, choice),
            }
        )
    if choice.text:
        blocks.append({"type": "text", "text": choice.text})
    blocks.extend(_tool_use(c, orjson.loads(c.arguments)) for c in _calls(choice))
    return blocks


def _message(plan: ChatPlan, content: list[dict[str, Any]], done: bool) -> Any:
    choice = plan.choices[0]
    usage = plan.usage
    return {
        "id": message_id(plan),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason(choice) if done else None,
        "stop_sequence": choice.stop_sequence if done else None,
        "usage": _usage(usage, done),
    }


def message_body(plan: ChatPlan) -> bytes:
    """The whole non-streamed ``message`` object."""
    return orjson.dumps(_message(plan, _blocks(plan, plan.choices[0]), done=True))


def _event(payload: dict[str, Any]) -> bytes:
    return named_event(payload["type"], orjson.dumps(payload))


def _stop(index: int) -> bytes:
    return _event({"type": "content_block_stop", "index": index})


def _start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        {"type": "content_block_start", "index": index, "content_block": block}
    )


_PING = _event({"type": "ping"})


def _text_delta(index: int, kind: bytes = b"text") -> tuple[bytes, bytes]:
    """The bytes around a text (or thinking) piece, encoded once per block."""
    head = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"%s_delta","%s":' % (index, kind, kind)
    )
    return head, b"}}\n\n"


def message_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    """Each SSE event of the stream with the time (from start) it is due:
    ``message_start``, per block ``content_block_start`` / ``…_delta`` /
    ``…_stop`` (a ``ping`` after the first start), ``message_delta``,
    ``message_stop``."""
    choice = plan.choices[0]
    pacing = plan.pacing
    start = pacing.due(0)
    yield start, _event({"type": "message_start", "message": _message(plan, [], False)})
    # (opening block, the deltas that fill it).
    blocks: list[tuple[dict[str, Any], list[bytes]]] = []
    # The thinking block's pieces take a step each; its signature none.
    thought = _thought(plan, choice)
    if thought:
        head, tail = _text_delta(0, b"thinking")
        pieces = [head + orjson.dumps(p) + tail for p in choice.reasoning]
        sealed = {"type": "signature_delta", "signature": signature(plan, choice)}
        pieces.append(
            _event({"type": "content_block_delta", "index": 0, "delta": sealed})
        )
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, pieces))
    if choice.text:
        head, tail = _text_delta(len(blocks))
        pieces = [head + orjson.dumps(p) + tail for p in choice.pieces]
        blocks.append(({"type": "text", "text": ""}, pieces))
    for call in _calls(choice):
        index = len(blocks)
        fragments = [
            _event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f},
                }
            )
            for f in call.fragments
        ]
        blocks.append((_tool_use(call, {}), fragments))
    # Reasoning not shown still took its time.
    step = 0 if thought else len(choice.reasoning)
    for index, (opening, deltas) in enumerate(blocks):
        if index == 0:
            yield start, _start(0, opening)
            yield start, _PING
        elif index == 1 and thought:
            # The answer's first block follows the thinking without a step.
            due = pacing.due(step)
            yield due, _stop(0)
            yield due, _start(1, opening)
        else:
            # A new block takes a step, as a second tool call does in chat.
            due = pacing.due(step)
            yield due, _stop(index - 1)
            yield due, _start(index, opening)
            step += 1
        last = len(deltas) - 1
        for k, delta in enumerate(deltas):
            if thought and index == 0 and k == last:
                # The signature comes with the last thinking piece.
                yield pacing.due(max(step - 1, 0)), delta
                continue
            yield pacing.due(step), delta
            step += 1
    end = pacing.due(max(step - 1, 0))
    if blocks:
        yield end, _stop(len(blocks) - 1)
    else:
        yield start, _PING
    yield (
        end,
        _event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(choice),
                    "stop_sequence": choice.stop_sequence,
                },
                "usage": _delta_usage(plan.usage),
            }
        ),
    )
    yield end, _event({"type": "message_stop"})


def _delta_usage(usage: Usage) -> dict[str, Any]:
    """``message_delta``'s usage: cumulative, input figures included."""
    out = _input_usage(usage)
    out["output_tokens"] = usage.completion_tokens
    _thinking_tokens(out, usage)
    return out


def count_body(count: TokenCount) -> bytes:
    """``count_tokens``: ``{"input_tokens": N}``."""
    return orjson.dumps({"input_tokens": count.prompt_tokens})


def error_type(error: ApiError) -> str:
    status = error.status
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_message(error: ApiError) -> str:
    """The message as Anthropic would word it where OpenAI's names OpenAI."""
    if error.status == 429 and error.code == "rate_limit_exceeded":
        return _RATE_LIMITED.get(error.type, _RATE_LIMITED["requests"]) + _RATE_TAIL
    if error.status == 500 and error.message.startswith(_OPENAI_SORRY):
        return "Internal server error"
    if error.status == 529:
        return "Overloaded"
    return error.message


def _error_json(error: ApiError) -> dict[str, str]:
    return {"type": error_type(error), "message": error_message(error)}


def error_body(error: ApiError) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    return orjson.dumps(
        {"type": "error", "error": _error_json(error), "request_id": error.request_id}
    )


def error_event(error: ApiError, sent: int = 0) -> bytes:
    """A stream's end on failure: ``event: error``, which the SDK raises."""
    return _event({"type": "error", "error": _error_json(error)})


def display_name(model_id: str) -> str:
    """``claude-sonnet-4-5`` as Anthropic names it: ``Claude Sonnet 4.5``
    (a date suffix dropped, version digits joined by dots)."""
    words: list[str] = []
    digits: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) < 8:
            digits.append(part)
            continue
        if digits:
            words.append(".".join(digits))
            digits = []
        if not part.isdigit():
            words.append(part.capitalize())
    if digits:
        words.append(".".join(digits))
    return " ".join(words)


_LINES = ("haiku", "sonnet", "opus")


def model_json(info: ModelInfo) -> dict[str, Any]:
    """A ``model`` object: every configured model is active, with Claude's
    current context window and output limit."""
    line = next((n for n in _LINES if n in info.id.split("-")), None)
    return {
        "type": "model",
        "id": info.id,
        "display_name": display_name(info.id),
        "created_at": _rfc3339(info.created),
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": line,
        "max_input_tokens": 200000,
        "max_tokens": 32000 if line == "opus" else 64000,
    }


def model_body(info: ModelInfo) -> bytes:
    """``GET /v1/models/{id}``: one ``model`` object."""
    return orjson.dumps(model_json(info))


def models_page(infos: Sequence[ModelInfo], has_more: bool) -> bytes:
    """``GET /v1/models``: a page of them, with the ids that bound it."""
    return orjson.dumps(
        {
            "data": [model_json(i) for i in infos],
            "has_more": has_more,
            "first_id": infos[0].id if infos else None,
            "last_id": infos[-1].id if infos else None,
        }
    )


def _rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(math.ceil(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ratelimit_headers(
    budgets: Sequence[tuple[str, int, float, float]], now: float
) -> dict[str, str]:
    """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, the
    reset an RFC 3339 time (when the budget is full again)."""
    headers: dict[str, str] = {}
    for kind, limit, available, reset in budgets:
        prefix = f"anthropic-ratelimit-{kind}-"
        headers[prefix + "limit"] = str(limit)
        headers[prefix + "remaining"] = str(max(0, math.floor(available)))
        headers[prefix + "reset"] = _rfc3339(now + max(0.0, reset))
    return headers
