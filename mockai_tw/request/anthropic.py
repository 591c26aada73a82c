"""``POST /v1/messages`` (and ``count_tokens``): Anthropic's body, read into
the engine's chat request, or a 400 as Anthropic words it.

The engine knows one provider-neutral request, ``ChatRequest``; this module
maps Anthropic's onto it: ``system`` becomes a system message, content blocks
their text, ``tool_use`` blocks an assistant's tool calls and ``tool_result``
blocks tool messages, ``tools`` (``input_schema``) function tools,
``tool_choice`` auto/any/tool/none OpenAI's auto/required/{function}/none,
``stop_sequences`` the stop list.  A failure names the field the way the
real API does: ``messages.0.content.1.tool_use_id: Field required``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mockai_tw.errors import ApiError
from mockai_tw.request import anthropic_media as media
from mockai_tw.request.chat import ChatRequest, FunctionDef, Message
from mockai_tw.request.features import PromptSegment, Thinking

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_CHOICES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
# Blocks the mock takes but cannot read (their text, if any, is not the prompt).
_OPAQUE_USER = frozenset({"search_result", "container_upload"})
_OPAQUE_ASSISTANT = frozenset({"thinking", "redacted_thinking"})


@dataclass(frozen=True)
class MessagesRequest:
    """An Anthropic Messages request, and the chat request it means."""

    model: str
    chat: ChatRequest
    # Required on /v1/messages; None on count_tokens.
    max_tokens: int | None
    stream: bool = False
    stop_sequences: tuple[str, ...] = ()
    # ``thinking: {type: enabled}``: the answer starts with a thinking block.
    thinking: Thinking | None = None
    # What images and documents cost beyond the text the engine counts, and
    # the documents' own text (counted by the tokenizer).
    media_tokens: int = 0
    document_texts: tuple[str, ...] = ()
    # The prompt block by block, for the prompt cache (tools, system, messages).
    segments: tuple[PromptSegment, ...] = ()


def problem(path: str, message: str) -> ApiError:
    """A 400 ``invalid_request_error`` naming ``path`` as Anthropic does."""
    return ApiError(400, f"{path}: {message}", param=path)


def _required(path: str) -> ApiError:
    return problem(path, "Field required")


_KINDS = {
    str: "a valid string",
    int: "a valid integer",
    bool: "a valid boolean",
    list: "a valid list",
    dict: "a valid dictionary",
}


def _typed(value: Any, kind: type, path: str) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not ok:
        raise problem(path, f"Input should be {_KINDS[kind]}")
    return value


def _get(
    body: Mapping[str, Any], key: str, kind: type, path: str, required: bool = False
) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise _required(path + key)
        return None
    return _typed(value, kind, path + key)


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise problem(key, "Input should be a valid number")
    if not low <= value <= high:
        raise problem(key, f"Input should be between {low:g} and {high:g}")
    return float(value)


def _body(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "There was an issue with your request body: it is not valid JSON."
        ) from None
    if not isinstance(value, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return value


def _block(value: Any, path: str) -> tuple[str, dict[str, Any]]:
    block = _typed(value, dict, path)
    kind = block.get("type")
    if kind is None:
        raise _required(f"{path}.type")
    return _typed(kind, str, f"{path}.type"), block


def _text_of(content: Any, path: str) -> str:
    """A string, or the text of a list of text blocks (``system``,
    ``tool_result.content``); other blocks there carry no text."""
    if isinstance(content, str):
        return content
    texts = []
    for i, value in enumerate(_typed(content, list, path)):
        kind, block = _block(value, f"{path}.{i}")
        if kind == "text":
            texts.append(_get(block, "text", str, f"{path}.{i}.", required=True))
    return "\n".join(texts)


# What a tool result's content may hold besides text.
_RESULT_BLOCKS = ("text", "image", "document", "search_result")


def _result_of(content: Any, path: str) -> tuple[str, int]:
    """A ``tool_result``'s text, and what its images and documents cost
    (checked as in a message: a screenshot tool's answer is an image)."""
    if content is None or isinstance(content, str):
        return content or "", 0
    texts, tokens = [], 0
    for i, value in enumerate(_typed(content, list, path)):
        where = f"{path}.{i}"
        kind, block = _block(value, where)
        if kind == "text":
            texts.append(_get(block, "text", str, f"{where}.", required=True))
        elif kind == "image":
            tokens += media.image(block, where)
        elif kind == "document":
            cost, text = media.document(block, where)
            tokens += cost
            if text:
                texts.append(text)
        elif kind not in _RESULT_BLOCKS:
            raise media.no_tag(f"{where}.type", kind, _RESULT_BLOCKS)
    return "\n".join(texts), tokens


@dataclass
class _Turn:
    """One Anthropic message, read: its text, tool uses and tool results."""

    role: str
    texts: list[str]
    uses: list[tuple[str, str, Any]]
    results: list[tuple[int, str, str]]
    raw: dict[str, Any]
    segments: list[PromptSegment]
    media_tokens: int = 0
    documents: list[str] = dataclasses.field(default_factory=list)


def _turn(value: Any, i: int) -> _Turn:
    path = f"messages.{i}"
    message = _typed(value, dict, path)
    role = _get(message, "role", str, f"{path}.", required=True)
    if role not in ("user", "assistant", "system"):
        raise problem(f"{path}.role", "Input should be 'user', 'assistant' or 'system'")
    if "content" not in message or message["content"] is None:
        raise _required(f"{path}.content")
    content = message["content"]
    turn = _Turn(role, [], [], [], message, [])
    if role == "system":
        # Text only, as the top-level ``system``.
        text = _text_of(content, f"{path}.content")
        turn.texts.append(text)
        turn.segments.append(PromptSegment(_key(content), text))
        return turn
    if isinstance(content, str):
        turn.texts.append(content)
        turn.segments.append(PromptSegment(_key(content), content))
        return turn
    for j, raw in enumerate(_typed(content, list, f"{path}.content")):
        where = f"{path}.content.{j}"
        kind, block = _block(raw, where)
        ttl = media.cache_ttl(block, where) if kind not in _OPAQUE_ASSISTANT else None
        tokens, counted = 0, ""
        if kind == "image" and role == "user":
            tokens = media.image(block, where)
            turn.media_tokens += tokens
        elif kind == "document" and role == "user":
            tokens, counted = media.document(block, where)
            turn.media_tokens += tokens
            turn.documents.append(counted)
        elif kind == "text":
            turn.texts.append(_get(block, "text", str, f"{where}.", required=True))
        elif kind == "tool_use" and role == "assistant":
            ident = _get(block, "id", str, f"{where}.", required=True)
            name = _get(block, "name", str, f"{where}.", required=True)
            arguments = _get(block, "input", dict, f"{where}.", required=True)
            turn.uses.append((ident, name, arguments))
        elif kind == "tool_result" and role == "user":
            ident = _get(block, "tool_use_id", str, f"{where}.", required=True)
            text, tokens = _result_of(block.get("content"), f"{where}.content")
            turn.media_tokens += tokens
            turn.results.append((j, ident, text))
        elif kind not in (_OPAQUE_USER if role == "user" else _OPAQUE_ASSISTANT):
            raise problem(
                f"{where}.type",
                f"Input tag '{kind}' found using 'type' is not a content block"
                f" a message with role '{role}' can hold here",
            )
        if kind == "text":
            counted = block["text"]
        elif kind in ("tool_use", "tool_result"):
            counted = _key(block).decode()
        turn.segments.append(PromptSegment(_key(block), counted, tokens, ttl))
    return turn


def _key(value: Any) -> bytes:
    """A block as a prompt cache keys it: its JSON, keys sorted, without its
    own ``cache_control`` (moving a breakpoint keeps what is before it)."""
    if isinstance(value, dict) and "cache_control" in value:
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _system_segments(system: Any) -> list[PromptSegment]:
    """The ``system`` blocks, breakpoints checked, for the prompt cache."""
    if isinstance(system, str):
        return [PromptSegment(_key(system), system)]
    out = []
    for i, value in enumerate(system):
        block = value if isinstance(value, dict) else {}
        ttl = media.cache_ttl(block, f"system.{i}")
        out.append(PromptSegment(_key(block), str(block.get("text", "")), 0, ttl))
    return out


def _breakpoints(segments: list[PromptSegment]) -> None:
    """At most four, a 1h one never after a 5m one: as the real API."""
    ttls = [s.ttl_s for s in segments if s.ttl_s is not None]
    if len(ttls) > media.MAX_BREAKPOINTS:
        raise ApiError(
            400,
            f"A maximum of {media.MAX_BREAKPOINTS} blocks with cache_control may"
            f" be provided. Found {len(ttls)}.",
        )
    if any(a < b for a, b in itertools.pairwise(ttls)):
        raise ApiError(
            400,
            "a ttl='1h' cache_control block must not come after a ttl='5m'"
            " cache_control block. Note that blocks are processed in the following"
            " order: `tools`, `system`, `messages`.",
        )


def _paired(turns: list[_Turn]) -> None:
    """Every ``tool_use`` answered by a ``tool_result`` in the very next
    message, and no ``tool_result`` without its ``tool_use``: what the real
    API refuses (consecutive messages of one role it merges, and so do we)."""
    for i, turn in enumerate(turns):
        before = turns[i - 1] if i > 0 else None
        used = {u[0] for u in before.uses} if before is not None else set()
        for j, ident, _ in turn.results:
            if ident not in used:
                raise problem(
                    f"messages.{i}.content.{j}",
                    f"unexpected `tool_use_id` found in `tool_result` blocks: {ident}."
                    " Each `tool_result` block must have a corresponding `tool_use`"
                    " block in the previous message.",
                )
        if turn.uses and i + 1 < len(turns):
            answered = {r[1] for r in turns[i + 1].results}
            missing = [u[0] for u in turn.uses if u[0] not in answered]
            if missing:
                raise problem(
                    f"messages.{i}",
                    f"`tool_use` ids were found without `tool_result` blocks"
                    f" immediately after: {', '.join(missing)}. Each `tool_use`"
                    " block must have a corresponding `tool_result` block in the"
                    " next message.",
                )


def _as_chat(turn: _Turn) -> list[Message]:
    """The chat messages one Anthropic message stands for."""
    text = "".join(turn.texts)
    if turn.role == "system":
        return [Message("system", text, {"role": "system", "content": text})]
    if turn.role == "assistant":
        raw: dict[str, Any] = {"role": "assistant", "content": text or None}
        if turn.uses:
            raw["tool_calls"] = [
                {
                    "id": ident,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": json.dumps(
                            arguments, ensure_ascii=False, separators=(",", ":")
                        ),
                    },
                }
                for ident, name, arguments in turn.uses
            ]
        return [Message("assistant", text, raw)]
    out = [
        Message(
            "tool", result, {"role": "tool", "tool_call_id": ident, "content": result}
        )
        for _, ident, result in turn.results
    ]
    if turn.texts or not turn.results:
        out.append(Message("user", text, {"role": "user", "content": text}))
    return out


def _tools(
    body: Mapping[str, Any], segments: list[PromptSegment]
) -> tuple[FunctionDef, ...]:
    tools = _get(body, "tools", list, "")
    out: list[FunctionDef] = []
    for i, value in enumerate(tools or []):
        path = f"tools.{i}"
        tool = _typed(value, dict, path)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise problem(
                f"{path}.type",
                f"server tool '{kind}' is not supported by this mock; only client"
                " tools (with `input_schema`) are",
            )
        name = _get(tool, "name", str, f"{path}.", required=True)
        if not _TOOL_NAME.match(name):
            raise problem(
                f"{path}.name", "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"
            )
        schema = _get(tool, "input_schema", dict, f"{path}.", required=True)
        if schema.get("type") != "object":
            raise problem(f"{path}.input_schema.type", "Input should be 'object'")
        out.append(
            FunctionDef(
                name=name,
                parameters=schema,
                description=_get(tool, "description", str, f"{path}."),
            )
        )
        ttl = media.cache_ttl(tool, path)
        key = _key(tool)
        segments.append(PromptSegment(key, key.decode(), 0, ttl))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise problem("tools", "Tool names must be unique.")
    return tuple(out)


def _tool_choice(
    body: Mapping[str, Any], tools: tuple[FunctionDef, ...]
) -> tuple[str, str | None, bool]:
    """(OpenAI's mode, the forced tool, whether calls may come in parallel)."""
    value = _get(body, "tool_choice", dict, "")
    if value is None:
        return ("auto" if tools else "none"), None, True
    kind = _get(value, "type", str, "tool_choice.", required=True)
    if kind not in _CHOICES:
        raise problem(
            "tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'"
        )
    parallel = not _get(value, "disable_parallel_tool_use", bool, "tool_choice.")
    if kind != "none" and not tools:
        raise problem(
            "tool_choice", "tool_choice may only be specified while providing tools."
        )
    if kind != "tool":
        return _CHOICES[kind], None, parallel
    name = _get(value, "name", str, "tool_choice.", required=True)
    if name not in {t.name for t in tools}:
        raise problem("tool_choice.name", f"Tool '{name}' not found in tools.")
    return "function", name, parallel


def _parse(data: bytes, default_model: str | None, counting: bool) -> MessagesRequest:
    body = _body(data)
    if default_model is not None and body.get("model") in (None, ""):
        body["model"] = default_model
    model = _get(body, "model", str, "", required=True)
    raw_messages = _get(body, "messages", list, "", required=True)
    max_tokens = _get(body, "max_tokens", int, "", required=not counting)
    if max_tokens is not None and max_tokens < 1:
        raise problem("max_tokens", "Input should be greater than or equal to 1")
    if not raw_messages:
        raise problem("messages", "at least one message is required")
    turns = [_turn(m, i) for i, m in enumerate(raw_messages)]
    _paired(turns)
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        text = _text_of(system, "system")
        messages.append(Message("system", text, {"role": "system", "content": text}))
    for turn in turns:
        messages.extend(_as_chat(turn))
    stops = _get(body, "stop_sequences", list, "") or []
    for i, stop in enumerate(stops):
        _typed(stop, str, f"stop_sequences.{i}")
    stream = False if counting else bool(_get(body, "stream", bool, ""))
    temperature = _number(body, "temperature", 0, 1)
    top_p = _number(body, "top_p", 0, 1)
    top_k = _get(body, "top_k", int, "")
    if top_k is not None and top_k < 0:
        raise problem("top_k", "Input should be greater than or equal to 0")
    metadata = _get(body, "metadata", dict, "")
    user = _get(metadata, "user_id", str, "metadata.") if metadata else None
    segments: list[PromptSegment] = []
    tools = _tools(body, segments)
    mode, forced, parallel = _tool_choice(body, tools)
    thinking = _thinking(body, max_tokens, temperature, top_p, top_k, forced, mode)
    if system is not None:
        segments.extend(_system_segments(system))
    for turn in turns:
        segments.extend(turn.segments)
    _breakpoints(segments)
    chat = ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=stream,
        max_tokens=max_tokens,
        stop=tuple(stops),
        user=user,
        temperature=temperature,
        top_p=top_p,
        tools=tools,
        tool_choice=mode,
        forced_tool=forced,
        parallel_tool_calls=parallel,
        body=body,
    )
    return MessagesRequest(
        model=model,
        chat=chat,
        max_tokens=max_tokens,
        stream=stream,
        stop_sequences=tuple(stops),
        thinking=thinking,
        media_tokens=sum(t.media_tokens for t in turns),
        document_texts=tuple(d for t in turns for d in t.documents if d),
        segments=tuple(segments),
    )


_THINKING_DOCS = (
    " Please consult our documentation at https://docs.claude.com/en/docs/"
    "build-with-claude/extended-thinking"
)


def _thinking(
    body: Mapping[str, Any],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    forced: str | None,
    mode: str,
) -> Thinking | None:
    """``thinking``: ``{type: enabled, budget_tokens}`` or ``{type: disabled}``,
    with the limits the real API puts on the rest of a thinking request."""
    value = _get(body, "thinking", dict, "")
    if value is None:
        return None
    kind = _get(value, "type", str, "thinking.", required=True)
    if kind == "disabled":
        return None
    if kind != "enabled":
        raise problem(
            "thinking",
            f"Input tag '{kind}' found using 'type' does not match any of the"
            " expected tags: 'disabled', 'enabled'",
        )
    path = "thinking.enabled."
    budget = _get(value, "budget_tokens", int, path, required=True)
    if budget < 1024:
        raise problem(
            path + "budget_tokens", "Input should be greater than or equal to 1024"
        )
    if max_tokens is not None and max_tokens <= budget:
        raise ApiError(
            400,
            "`max_tokens` must be greater than `thinking.budget_tokens`."
            + _THINKING_DOCS
            + "#max-tokens-and-context-window-size",
            param="max_tokens",
        )
    if temperature is not None and temperature != 1:
        raise ApiError(
            400,
            "`temperature` may only be set to 1 when thinking is enabled."
            + _THINKING_DOCS
            + "#feature-compatibility",
            param="temperature",
        )
    if top_k is not None:
        raise ApiError(
            400,
            "`top_k` is not supported when thinking is enabled." + _THINKING_DOCS,
            param="top_k",
        )
    if top_p is not None and not 0.95 <= top_p <= 1:
        raise ApiError(
            400,
            "`top_p` must be between 0.95 and 1 when thinking is enabled."
            + _THINKING_DOCS,
            param="top_p",
        )
    if forced is not None or mode == "required":
        raise ApiError(
            400,
            "Thinking may not be enabled when tool_choice forces tool use.",
            param="tool_choice",
        )
    return Thinking(budget=budget)


def parse_messages_request(
    data: bytes, default_model: str | None = None
) -> MessagesRequest:
    """``POST /v1/messages``: ``model``, ``messages`` and ``max_tokens`` required."""
    return _parse(data, default_model, counting=False)


def parse_count_tokens_request(
    data: bytes, default_model: str | None = None
) -> MessagesRequest:
    """``POST /v1/messages/count_tokens``: the same body without ``max_tokens``."""
    return _parse(data, default_model, counting=True)
