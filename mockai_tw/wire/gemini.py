"""Google Gemini API shapes: ``GenerateContentResponse`` bodies, the SSE
stream of them (``?alt=sse``), ``countTokens``, the model resource and the
``google.rpc.Status`` error body -- all rendered from the engine's
provider-neutral plans.

Pure: the stream's times are the plan's pacing, step for step as the chat
stream spends them (one step per text piece; a function call, sent whole as
Gemini sends it, is due when its last argument fragment would be), so a
rule's or a header's timing reads the same on every API.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from mockai_tw.engine.plan import (
    ChatPlan,
    ChoicePlan,
    EmbeddingsPlan,
    ModelInfo,
    TokenCount,
)
from mockai_tw.errors import ApiError
from mockai_tw.wire.signatures import signature

# ``google.rpc.Code`` names by HTTP status; other 4xx are invalid
# arguments, other 5xx internal errors.
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    # A rule's own 529 (an ``overloaded`` fault is a 503 here).
    529: "UNAVAILABLE",
}
_OPENAI_SORRY = "The server had an error while processing your request."

SAFETY_RATINGS = [
    {"category": c, "probability": "NEGLIGIBLE"}
    for c in (
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
    )
]


def response_id(plan: ChatPlan) -> str:
    """The plan's id without OpenAI's prefix (stable per plan)."""
    return plan.id.partition("-")[2][:24] or plan.id


def finish_reason(choice: ChoicePlan) -> str:
    if choice.finish_reason == "length":
        return "MAX_TOKENS"
    if choice.finish_reason == "content_filter":
        return "SAFETY"
    return "STOP"


def _call_part(name: str, arguments: str) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": orjson.loads(arguments)}}


def _thought(plan: ChatPlan, choice: ChoicePlan) -> bool:
    return bool(choice.reasoning) and plan.reasoning_shown


def _call_parts(plan: ChatPlan, choice: ChoicePlan) -> list[dict[str, Any]]:
    """The function calls; after thinking (shown or not) the first carries
    the ``thoughtSignature`` a client sends back with it."""
    calls = choice.tool_calls or (
        (choice.function_call,) if choice.function_call is not None else ()
    )
    parts = [_call_part(c.name, c.arguments) for c in calls]
    if parts and choice.reasoning:
        parts[0]["thoughtSignature"] = signature(plan, choice)
    return parts


def _parts(plan: ChatPlan, choice: ChoicePlan) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if _thought(plan, choice):
        parts.append({"text": choice.reasoning_text, "thought": True})
    if choice.text:
        parts.append({"text": choice.text})
    parts.extend(_call_parts(plan, choice))
    return parts


def _candidate(
    index: int, parts: list[dict[str, Any]], finish: str | None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": parts},
        "index": index,
    }
    if finish is not None:
        candidate["finishReason"] = finish
        candidate["safetyRatings"] = SAFETY_RATINGS
    return candidate


def _usage(plan: ChatPlan, done: bool) -> dict[str, Any]:
    """Thoughts are counted apart from the candidates, whether shown or not."""
    prompt = plan.usage.prompt_tokens
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    completion = plan.usage.completion_tokens if done else 0
    thoughts = plan.usage.reasoning_tokens
    if done:
        usage["candidatesTokenCount"] = completion - thoughts
    usage["totalTokenCount"] = prompt + (completion if done else thoughts)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _response(
    plan: ChatPlan, candidates: list[dict[str, Any]], done: bool
) -> dict[str, Any]:
    return {
        "candidates": candidates,
        "usageMetadata": _usage(plan, done),
        "modelVersion": plan.model,
        "responseId": response_id(plan),
    }


def generate_body(plan: ChatPlan) -> bytes:
    """The whole non-streamed ``GenerateContentResponse``."""
    candidates = [
        _candidate(c.index, _parts(plan, c), finish_reason(c)) for c in plan.choices
    ]
    return orjson.dumps(_response(plan, candidates, done=True))


def _event(payload: dict[str, Any]) -> bytes:
    # Google frames each chunk with CRLF line ends.
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def _chunks(plan: ChatPlan) -> Iterator[tuple[float, dict[str, Any]]]:
    """Each streamed ``GenerateContentResponse`` with the time (from start)
    it is due: one per thought piece (when shown), text piece or function
    call; the last carries ``finishReason`` and the whole usage."""
    choice = plan.choices[0]
    pacing = plan.pacing
    # Thoughts take their steps whether they are sent or not.
    thought = len(choice.reasoning)
    # (step it is due at, its parts).
    steps: list[tuple[int, list[dict[str, Any]]]] = []
    if _thought(plan, choice):
        steps = [
            (i, [{"text": p, "thought": True}]) for i, p in enumerate(choice.reasoning)
        ]
    steps.extend((thought + i, [{"text": p}]) for i, p in enumerate(choice.pieces))
    calls = choice.tool_calls or (
        (choice.function_call,) if choice.function_call is not None else ()
    )
    step = thought
    parts = _call_parts(plan, choice)
    for k, (call, part) in enumerate(zip(calls, parts, strict=True)):
        if k > 0:
            step += 1
        step += len(call.fragments)
        steps.append((max(step - 1, 0), [part]))
    finish = finish_reason(choice)
    if not steps or steps[-1][1][0].get("thought"):
        steps.append((max(thought - 1, 0), [{"text": ""}]))
    last = len(steps) - 1
    for n, (due, parts) in enumerate(steps):
        done = n == last
        candidate = _candidate(choice.index, parts, finish if done else None)
        yield pacing.due(due), _response(plan, [candidate], done)


def generate_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    """The stream as SSE (``?alt=sse``): a ``data:`` event per chunk."""
    for due, chunk in _chunks(plan):
        yield due, _event(chunk)


def generate_array_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    """The stream without ``?alt=sse``: one JSON array, written as it
    grows (``[`` with the first chunk, a comma and CRLF before each next
    one, ``]`` after the last), each element a whole response."""
    due = 0.0
    for n, (due, chunk) in enumerate(_chunks(plan)):
        yield due, (b"[" if n == 0 else b",\r\n") + orjson.dumps(chunk) + b"\n"
    yield due, b"]"


def array_error_event(error: ApiError, sent: int = 0) -> bytes:
    """A JSON-array stream's end on failure: the error as its last element
    (the whole array if nothing was sent yet)."""
    element = orjson.dumps({"error": _error_json(error)})
    return (b"[" if sent == 0 else b",\r\n") + element + b"\n]"


def embed_body(plan: EmbeddingsPlan) -> bytes:
    """``embedContent``: ``{"embedding": {"values": [...]}}``."""
    return orjson.dumps({"embedding": {"values": plan.vectors[0].tolist()}})


def batch_embed_body(plan: EmbeddingsPlan) -> bytes:
    """``batchEmbedContents``: ``{"embeddings": [{"values": [...]}, ...]}``."""
    return orjson.dumps({"embeddings": [{"values": v.tolist()} for v in plan.vectors]})


def count_body(count: TokenCount) -> bytes:
    """``countTokens``: ``{"totalTokens": N}``."""
    return orjson.dumps(
        {
            "totalTokens": count.prompt_tokens,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": count.prompt_tokens}
            ],
        }
    )


def model_json(info: ModelInfo) -> dict[str, Any]:
    """A ``Model`` resource as ``GET /v1beta/models`` lists it."""
    name = info.id
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": f"{name}, served by mockai.",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "streamGenerateContent",
            "embedContent",
            "batchEmbedContents",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }


def model_body(info: ModelInfo) -> bytes:
    return orjson.dumps(model_json(info))


def models_body(infos: Sequence[ModelInfo]) -> bytes:
    return orjson.dumps({"models": [model_json(i) for i in infos]})


def status(error: ApiError) -> str:
    found = STATUSES.get(error.status)
    if found is not None:
        return found
    return "INTERNAL" if error.status >= 500 else "INVALID_ARGUMENT"


def error_message(error: ApiError) -> str:
    """The message as Google would word it where OpenAI's names OpenAI."""
    if error.status == 429 and error.code == "rate_limit_exceeded":
        return (
            "You exceeded your current quota, please check your plan and billing"
            f" details. {error.message}"
        )
    if error.type == "overloaded_error":
        return "The model is overloaded. Please try again later."
    if error.status == 500 and error.message.startswith(_OPENAI_SORRY):
        return "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    if error.code == "model_not_found":
        name = error.message.split("'")[1] if "'" in error.message else "model"
        return (
            f"models/{name} is not found for API version v1beta, or is not supported"
            " for generateContent. Call ListModels to see the list of available"
            " models and their supported methods."
        )
    return error.message


def _error_json(error: ApiError) -> dict[str, Any]:
    return {
        "code": error.status,
        "message": error_message(error),
        "status": status(error),
    }


def error_body(error: ApiError) -> bytes:
    """``{"error": {"code", "message", "status"}}`` (``google.rpc.Status``)."""
    return orjson.dumps({"error": _error_json(error)})


def error_event(error: ApiError, sent: int = 0) -> bytes:
    """A stream's end on failure: a ``data:`` chunk holding the error, which
    the SDK raises as an ``APIError``."""
    return _event({"error": _error_json(error)})


def no_headers(
    budgets: Sequence[tuple[str, int, float, float]], now: float
) -> dict[str, str]:
    """Gemini sends no rate-limit headers (a 429 keeps its ``retry-after``)."""
    return {}
