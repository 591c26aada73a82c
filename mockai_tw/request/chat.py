"""``POST /v1/chat/completions``: the body as a frozen ChatRequest, or a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockai_tw.errors import invalid
from mockai_tw.request.common import Fields, missing, parse_body, wrong_type

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
_CONTENT_REQUIRED = frozenset({"system", "user", "developer", "tool"})


@dataclass(frozen=True)
class Message:
    role: str
    # The text of the message: a string, or the text parts joined.
    text: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    user: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    # The whole parsed body, for rules and the journal.
    body: dict[str, Any] | None = None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""


def _content_text(content: Any, param: str, required: bool) -> str:
    if content is None:
        if required:
            raise missing(param)
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise wrong_type(param, "one of a string or array of objects", content)
    texts = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise wrong_type(where, "an object", part)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise missing(f"{where}.type")
        if kind == "text":
            text = Fields(part, f"{where}.").string("text", required=True)
            texts.append(text or "")
    return "".join(texts)


def _message(value: Any, i: int) -> Message:
    param = f"messages[{i}]"
    if not isinstance(value, dict):
        raise wrong_type(param, "an object", value)
    fields = Fields(value, f"{param}.")
    role = fields.string("role", required=True)
    if role not in ROLES:
        raise invalid(
            f"Invalid value: '{role}'. Supported values are: {_ROLE_LIST}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    fields.string("name")
    has_calls = bool(fields.array("tool_calls")) or bool(fields.obj("function_call"))
    required = role in _CONTENT_REQUIRED or (role == "assistant" and not has_calls)
    if role == "assistant" and "content" not in value and not has_calls:
        raise missing(f"{param}.content")
    text = _content_text(value.get("content"), f"{param}.content", required)
    if role == "tool":
        fields.string("tool_call_id", required=True)
    if role == "function":
        fields.string("name", required=True)
    return Message(role=role, text=text, raw=value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise wrong_type("stop", "one of a string or array of strings", value)
    if len(value) > 4:
        raise invalid(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4,"
            f" but got an array with length {len(value)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    return tuple(value)


def parse_chat_request(data: bytes) -> ChatRequest:
    body = parse_body(data)
    fields = Fields(body)
    model = fields.string("model")
    if not model:
        raise invalid("you must provide a model parameter", param="model")
    raw_messages = fields.array("messages")
    if raw_messages is None:
        raise missing("messages")
    if not raw_messages:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    messages = tuple(_message(m, i) for i, m in enumerate(raw_messages))
    stream = fields.boolean("stream")
    options = fields.obj("stream_options")
    if options is not None and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    include_usage = Fields(options or {}, "stream_options.").boolean("include_usage")
    max_tokens = fields.integer("max_completion_tokens", low=1)
    legacy_max = fields.integer("max_tokens", low=1)
    for key, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("presence_penalty", -2, 2),
        ("frequency_penalty", -2, 2),
    ):
        fields.number(key, low=low, high=high)
    tools = fields.array("tools") or []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise wrong_type(f"tools[{i}]", "an object", tool)
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, (str, dict)):
        raise wrong_type("tool_choice", "one of a string or object", tool_choice)
    fields.obj("logit_bias")
    fields.boolean("parallel_tool_calls", default=True)
    fields.boolean("store")
    fields.string("service_tier")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        n=fields.integer("n", low=1, high=128) or 1,
        max_tokens=max_tokens if max_tokens is not None else legacy_max,
        stop=_stop(body.get("stop")),
        seed=fields.integer("seed"),
        user=fields.string("user"),
        temperature=fields.number("temperature"),
        top_p=fields.number("top_p"),
        logprobs=fields.boolean("logprobs"),
        top_logprobs=fields.integer("top_logprobs", low=0, high=20),
        tools=tuple(tools),
        tool_choice=tool_choice,
        response_format=fields.obj("response_format"),
        metadata=fields.obj("metadata"),
        body=body,
    )
