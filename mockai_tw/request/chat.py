"""``POST /v1/chat/completions``: the body as a frozen ChatRequest, or a 400."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import invalid
from mockai_tw.request.common import (
    INT64_MAX,
    INT64_MIN,
    Fields,
    Source,
    check_integer,
    missing,
    parse_body,
    worded,
    wrong_type,
)
from mockai_tw.tables import remember
from mockai_tw.values import adopted, template

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
_CONTENT_REQUIRED = frozenset({"system", "user", "developer", "tool"})


@dataclass(frozen=True)
class Message:
    role: str
    # The text of the message: a string, or the text parts joined.
    text: str
    raw: dict[str, Any]


_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class FunctionDef:
    """A function the model may call (from ``tools`` or legacy ``functions``)."""

    name: str
    parameters: dict[str, Any] | None = None
    description: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class ResponseFormat:
    type: str = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool = False


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
    tools: tuple[FunctionDef, ...] = ()
    # "none", "auto", "required", or the name of the one function to call.
    tool_choice: str = "none"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    # Legacy ``functions``: answered with ``function_call``, not ``tool_calls``.
    functions: tuple[FunctionDef, ...] = ()
    function_call: str = "none"
    forced_function: str | None = None
    response_format: ResponseFormat = ResponseFormat()
    metadata: dict[str, Any] | None = None
    # ``store: true``: kept for ``GET /v1/chat/completions``.
    store: bool = False
    # The whole parsed body, for rules and the journal.
    body: dict[str, Any] | None = None

    @property
    def last_role(self) -> str:
        return self.messages[-1].role

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
        checks.mapping(part, where)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise missing(f"{where}.type")
        if kind == "text":
            text = Fields(part, f"{where}.").string("text", required=True)
            texts.append(text or "")
    return "".join(texts)


def _message(value: Any, i: int) -> Message:
    param = f"messages[{i}]"
    fields = Fields(checks.mapping(value, param), f"{param}.")
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
    return tuple(checks.array(value, "stop", max_items=4))


def _function(value: Any, param: str) -> FunctionDef:
    fields = Fields(checks.mapping(value, param), f"{param}.")
    name = fields.string("name", required=True) or ""
    if not _FUNCTION_NAME.match(name):
        raise invalid(
            f"Invalid '{param}.name': string does not match pattern."
            " Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'"
            " and is at most 64 characters long.",
            param=f"{param}.name",
            code="invalid_value",
        )
    parameters = fields.obj("parameters")
    if parameters is not None and parameters.get("type", "object") != "object":
        raise invalid(
            f"Invalid schema for function '{name}': schema must be a JSON Schema"
            f" of 'type: \"object\"', got 'type: \"{parameters.get('type')}\"'.",
            param=f"{param}.parameters",
            code="invalid_function_parameters",
        )
    return FunctionDef(
        name=name,
        parameters=parameters,
        description=fields.string("description"),
        strict=fields.boolean("strict"),
    )


def _tools(body: dict[str, Any]) -> tuple[FunctionDef, ...]:
    tools = Fields(body).array("tools") or []
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        checks.mapping(tool, param)
        kind = Fields(tool, f"{param}.").string("type", required=True)
        if kind != "function":
            raise invalid(
                f"Invalid value: '{kind}'. Supported values are: 'function' and"
                " 'custom'.",
                param=f"{param}.type",
                code="invalid_value",
            )
        if "function" not in tool:
            raise missing(f"{param}.function")
        out.append(_function(tool["function"], f"{param}.function"))
    names = [t.name for t in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(
                f"Invalid 'tools': duplicate function name '{name}'.",
                param="tools",
                code="invalid_value",
            )
    return tuple(out)


def _choice(
    value: Any, param: str, offered: tuple[FunctionDef, ...], legacy: bool
) -> tuple[str, str | None]:
    """Normalise ``tool_choice`` / ``function_call`` to (mode, forced name)."""
    default = "auto" if offered else "none"
    if value is None:
        return default, None
    modes = ("none", "auto") if legacy else ("none", "auto", "required")
    if isinstance(value, str):
        checks.one_of(value, param, modes)
        if value != "none" and not offered:
            raise invalid(
                f"Invalid value for '{param}': '{param}' is only allowed when"
                f" '{'functions' if legacy else 'tools'}' are specified.",
                param=param,
            )
        return value, None
    if not isinstance(value, dict):
        raise wrong_type(param, "one of a string or object", value)
    inner = value if legacy else value.get("function")
    if not legacy and value.get("type") not in ("function", None):
        raise invalid(
            f"Invalid value: '{value.get('type')}'. Supported values are: 'function'.",
            param=f"{param}.type",
            code="invalid_value",
        )
    name = inner.get("name") if isinstance(inner, dict) else None
    where = f"{param}.name" if legacy else f"{param}.function.name"
    if not isinstance(name, str):
        raise missing(where)
    if name not in {f.name for f in offered}:
        raise invalid(
            f"Invalid value for '{param}': function '{name}' not found in"
            f" '{'functions' if legacy else 'tools'}'.",
            param=param,
            code="invalid_value",
        )
    return "function", name


def logit_bias(fields: Fields) -> dict[str, Any] | None:
    """``logit_bias``: token ids to a bias from -100 to 100."""
    value = fields.obj("logit_bias")
    for token, bias in (value or {}).items():
        check_integer(
            bias,
            fields.name(f"logit_bias.{token}"),
            low=-100,
            high=100,
            literal=fields.literal("logit_bias", token),
        )
    return value


def _response_format(value: Any) -> ResponseFormat:
    if value is None:
        return ResponseFormat()
    checks.mapping(value, "response_format")
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object',"
            " and 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    spec = value.get("json_schema")
    if spec is None:
        raise missing("response_format.json_schema")
    spec = checks.mapping(spec, "response_format.json_schema")
    fields = Fields(spec, "response_format.json_schema.")
    name = fields.string("name", required=True) or ""
    if not _FUNCTION_NAME.match(name):
        raise invalid(
            "Invalid 'response_format.json_schema.name': string does not match"
            " pattern. Expected a string that matches the pattern"
            " '^[a-zA-Z0-9_-]+$'.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = fields.obj("schema")
    return ResponseFormat(
        type="json_schema",
        name=name,
        schema=schema if schema is not None else {},
        strict=fields.boolean("strict"),
    )


# The common body (a model, plain text messages, maybe ``stream``): every
# check the full parse makes passes for it, so it is read in one pass.
_PLAIN_KEYS = frozenset({"model", "messages", "stream"})
_PLAIN_MESSAGE = frozenset({"role", "content"})
_PLAIN_ROLES = frozenset({"system", "user", "developer", "assistant"})


# A plain body's request but for what each body gives.
_PLAIN = template(ChatRequest, model="", messages=(), body=None)


def _plain(body: dict[str, Any]) -> ChatRequest | None:
    """The request if ``body`` is the common kind, else None (the full
    parse then reads it, and words any error)."""
    if not body.keys() <= _PLAIN_KEYS:
        return None
    model = body.get("model")
    raw = body.get("messages")
    stream = body.get("stream", False)
    if type(model) is not str or not model or type(raw) is not list or not raw:
        return None
    if type(stream) is not bool:
        return None
    messages = []
    for value in raw:
        if type(value) is not dict or value.keys() != _PLAIN_MESSAGE:
            return None
        role = value["role"]
        text = value["content"]
        if type(role) is not str or role not in _PLAIN_ROLES or type(text) is not str:
            return None
        # Built by __init__: its fields stay in the instance, no dict (a
        # stream's request keeps its messages).
        messages.append(Message(role, text, value))
    fields = _PLAIN.copy()
    fields["model"] = model
    fields["messages"] = tuple(messages)
    fields["stream"] = stream
    fields["body"] = body
    return adopted(ChatRequest, fields)


# Plain bodies read before, by their bytes: a load generator sends the same
# body again and again, and a plain request is never changed once read (its
# body and messages are only read downstream), so one value serves them all.
# Bounded by count and body size, and emptied when full.
_READ: dict[tuple[bytes, str | None], ChatRequest] = {}
_MAX_READ = 256
_MAX_READ_BYTES = 2048


def parse_chat_request(data: bytes, default_model: str | None = None) -> ChatRequest:
    key = (data, default_model)
    known = _READ.get(key)
    if known is not None:
        return known
    # parse_body raises only ApiErrors and the one-pass read nothing: only
    # the full parse needs its Problems worded.
    body = parse_body(data, default_model)
    plain = _plain(body)
    if plain is not None:
        if len(data) <= _MAX_READ_BYTES:
            remember(_READ, key, plain, _MAX_READ)
        return plain
    return _worded_parse(body, data)


def _parse(body: dict[str, Any], data: bytes) -> ChatRequest:
    """Every field read and checked, as OpenAI checks it."""
    fields = Fields(body, source=Source(data))
    model = fields.string("model")
    if not model:
        raise invalid("you must provide a model parameter", param="model")
    raw_messages = fields.array("messages", min_items=1)
    if raw_messages is None:
        raise missing("messages")
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
    tools = _tools(body)
    tool_choice, forced_tool = _choice(
        body.get("tool_choice"), "tool_choice", tools, False
    )
    functions = tuple(
        _function(f, f"functions[{i}]")
        for i, f in enumerate(fields.array("functions") or [])
    )
    function_call, forced_function = _choice(
        body.get("function_call"), "function_call", functions, True
    )
    logprobs = fields.boolean("logprobs")
    top_logprobs = fields.integer("top_logprobs", low=0, high=20)
    if top_logprobs is not None and not logprobs:
        raise invalid(
            "Invalid value for 'logprobs': must be true when 'top_logprobs' is set.",
            param="logprobs",
        )
    logit_bias(fields)
    store = fields.boolean("store")
    fields.string("service_tier")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        n=fields.integer("n", low=1, high=128) or 1,
        max_tokens=max_tokens if max_tokens is not None else legacy_max,
        stop=_stop(body.get("stop")),
        seed=fields.integer("seed", low=INT64_MIN, high=INT64_MAX),
        user=fields.string("user"),
        temperature=fields.number("temperature"),
        top_p=fields.number("top_p"),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced_tool,
        parallel_tool_calls=fields.boolean("parallel_tool_calls", default=True),
        functions=functions,
        function_call=function_call,
        forced_function=forced_function,
        response_format=_response_format(body.get("response_format")),
        metadata=fields.obj("metadata"),
        store=store,
        body=body,
    )


_worded_parse = worded(_parse)
