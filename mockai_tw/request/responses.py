"""``POST /v1/responses``: the body as a frozen ResponsesRequest, or a 400.

The Responses API says most things chat says, in other words: ``input``
items instead of ``messages``, flat function tools, ``text.format`` instead
of ``response_format``.  What both share (function definitions, their
checks) is read with the chat request's own helpers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import invalid
from mockai_tw.request.chat import (
    _FUNCTION_NAME,
    FunctionDef,
    ResponseFormat,
    _function,
)
from mockai_tw.request.common import (
    INT64_MAX,
    INT64_MIN,
    Fields,
    Source,
    check_integer,
    missing,
    out_of_range,
    parse_body,
    worded,
    wrong_type,
)

ROLES = ("user", "assistant", "system", "developer")
# Parts a message may hold: an assistant's are what the model said.
_ASSISTANT_PARTS = ("output_text", "refusal")
_INPUT_PARTS = ("input_text", "input_image", "input_file")
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "compaction",
)
# Hosted tools OpenAI runs itself: accepted and echoed, never called here.
HOSTED_TOOLS = frozenset(
    {
        "file_search",
        "computer",
        "computer_use_preview",
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "mcp",
        "code_interpreter",
        "programmatic_tool_calling",
        "image_generation",
        "local_shell",
        "shell",
        "custom",
        "namespace",
        "tool_search",
        "apply_patch",
    }
)
INCLUDES = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)
LOGPROBS = "message.output_text.logprobs"
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_TIERS = ("auto", "default", "flex", "scale", "priority")
_METADATA_PAIRS = 16
# A query-string integer: digits (a bound on them keeps ``int()`` cheap).
_INTEGER = re.compile(r"-?[0-9]{1,100}")


@dataclass(frozen=True)
class InputItem:
    """One ``input`` item, checked: a message, a function call, or its output.

    ``raw`` is the item as sent (content parts and all) for token counting
    and for ``input_items``; the fields are what the engine reads.
    """

    type: str
    raw: dict[str, Any]
    role: str = ""
    # A message's text parts joined, or a call output's text.
    text: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ResponsesRequest:
    model: str
    input: tuple[InputItem, ...]
    instructions: str | None = None
    # ``tools`` as the response echoes them; ``functions`` are the callable ones.
    tools: tuple[dict[str, Any], ...] = ()
    functions: tuple[FunctionDef, ...] = ()
    # "none", "auto", "required", or "function" with ``forced_tool``.
    tool_choice: str = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    text_format: ResponseFormat = field(default_factory=ResponseFormat)
    format_description: str | None = None
    verbosity: str = "medium"
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    # The conversation (``conv_…``) whose items come first and get the new ones.
    conversation: str | None = None
    store: bool = True
    stream: bool = False
    background: bool = False
    metadata: Mapping[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    user: str | None = None
    seed: int | None = None
    truncation: str = "disabled"
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    include: tuple[str, ...] = ()
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # The whole parsed body, for rules and the journal.
    body: dict[str, Any] | None = None

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in self.include

    @property
    def tool_choice_json(self) -> str | dict[str, str]:
        """``tool_choice`` as the response echoes it."""
        if self.forced_tool is not None:
            return {"type": "function", "name": self.forced_tool}
        return self.tool_choice


def _enum(value: str | None, param: str, allowed: tuple[str, ...]) -> None:
    if value is not None:
        checks.one_of(value, param, allowed)


def _parts(content: list[Any], param: str, role: str) -> str:
    """Check a message's content parts; return the text they hold."""
    allowed = _ASSISTANT_PARTS if role == "assistant" else _INPUT_PARTS
    texts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        fields = Fields(checks.mapping(part, where), f"{where}.")
        kind = fields.string("type", required=True)
        _enum(kind, f"{where}.type", allowed)
        if kind in ("input_text", "output_text"):
            texts.append(fields.string("text", required=True) or "")
        elif kind == "refusal":
            fields.string("refusal", required=True)
        elif kind == "input_image":
            fields.string("detail")
            if fields.string("image_url") is None and fields.string("file_id") is None:
                raise missing(f"{where}.image_url")
        else:
            keys = ("file_id", "file_data", "file_url")
            if all(fields.string(k) is None for k in keys):
                raise missing(f"{where}.file_id")
    return "".join(texts)


def _message(item: dict[str, Any], param: str) -> InputItem:
    fields = Fields(item, f"{param}.")
    role = fields.string("role", required=True) or ""
    _enum(role, f"{param}.role", ROLES)
    content = item.get("content")
    if content is None:
        raise missing(f"{param}.content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = _parts(content, f"{param}.content", role)
    else:
        raise wrong_type(f"{param}.content", "one of a string or array", content)
    fields.string("id")
    return InputItem("message", item, role=role, text=text)


def _output_text(output: Any, param: str) -> str:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise wrong_type(param, "one of a string or array", output)
    return _parts(output, param, "tool")


def _item(value: Any, i: int) -> InputItem | None:
    param = f"input[{i}]"
    fields = Fields(checks.mapping(value, param), f"{param}.")
    kind = fields.string("type") or "message"
    _enum(kind, f"{param}.type", ITEM_TYPES)
    if kind == "message":
        return _message(value, param)
    if kind in ("reasoning", "compaction"):
        # Our answers never reason; a client replaying another model's output
        # (or a ``responses/compact`` result) may send such items back, and
        # they cost nothing here.
        return None
    fields.string("id")
    call_id = fields.string("call_id", required=True) or ""
    if kind == "function_call":
        return InputItem(
            "function_call",
            value,
            call_id=call_id,
            name=fields.string("name", required=True) or "",
            arguments=fields.string("arguments", required=True) or "",
        )
    if "output" not in value or value["output"] is None:
        raise missing(f"{param}.output")
    text = _output_text(value["output"], f"{param}.output")
    return InputItem("function_call_output", value, call_id=call_id, text=text)


def _input(body: dict[str, Any], chained: bool) -> tuple[InputItem, ...]:
    value = body.get("input")
    if value is None:
        if chained:
            return ()
        raise missing("input")
    if isinstance(value, str):
        raw = {"role": "user", "content": value}
        return (InputItem("message", raw, role="user", text=value),)
    if not isinstance(value, list):
        raise wrong_type("input", "one of a string or array", value)
    if not chained:
        checks.array(value, "input", min_items=1)
    items = (_item(v, i) for i, v in enumerate(value))
    return tuple(item for item in items if item is not None)


def _tools(
    body: dict[str, Any],
) -> tuple[tuple[dict[str, Any], ...], list[FunctionDef]]:
    echoed: list[dict[str, Any]] = []
    functions: list[FunctionDef] = []
    for i, tool in enumerate(Fields(body).array("tools") or []):
        param = f"tools[{i}]"
        checks.mapping(tool, param)
        kind = Fields(tool, f"{param}.").string("type", required=True)
        _enum(kind, f"{param}.type", ("function", *sorted(HOSTED_TOOLS)))
        if kind != "function":
            echoed.append(tool)
            continue
        # Responses function tools are flat: the chat check reads them as is.
        function = _function(tool, param)
        strict = tool.get("strict")
        echoed.append(
            {
                "type": "function",
                "name": function.name,
                "description": function.description,
                "parameters": function.parameters,
                # OpenAI's default for Responses function tools.
                "strict": True if strict is None else strict,
            }
        )
        functions.append(function)
    names = [f.name for f in functions]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise invalid(
                f"Invalid 'tools': duplicate function name '{name}'.",
                param="tools",
                code="invalid_value",
            )
    return tuple(echoed), functions


def _tool_choice(value: Any, functions: list[FunctionDef]) -> tuple[str, str | None]:
    """(mode, forced function name); hosted-tool choices are not supported."""
    if value is None:
        return "auto", None
    if isinstance(value, str):
        _enum(value, "tool_choice", ("none", "auto", "required"))
        if value == "required" and not functions:
            raise invalid(
                "Tool choice 'required' must be specified with function 'tools'.",
                param="tool_choice",
            )
        return value, None
    if not isinstance(value, dict):
        raise wrong_type("tool_choice", "one of a string or object", value)
    kind = Fields(value, "tool_choice.").string("type", required=True)
    _enum(kind, "tool_choice.type", ("function",))
    name = Fields(value, "tool_choice.").string("name", required=True)
    if name not in {f.name for f in functions}:
        raise invalid(
            f"Tool choice '{name}' not found in 'tools' parameter.",
            param="tool_choice",
            code="invalid_value",
        )
    return "function", name


def _text(body: dict[str, Any]) -> tuple[ResponseFormat, str | None, str]:
    text = Fields(body).obj("text") or {}
    fields = Fields(text, "text.")
    verbosity = fields.string("verbosity") or "medium"
    _enum(verbosity, "text.verbosity", ("low", "medium", "high"))
    value = fields.obj("format")
    if value is None:
        return ResponseFormat(), None, verbosity
    fmt = Fields(value, "text.format.")
    kind = fmt.string("type", required=True)
    _enum(kind, "text.format.type", ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return ResponseFormat(type=kind or "text"), None, verbosity
    name = fmt.string("name", required=True) or ""
    if not _FUNCTION_NAME.match(name):
        raise invalid(
            "Invalid 'text.format.name': string does not match pattern. Expected a"
            " string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param="text.format.name",
            code="invalid_value",
        )
    schema = fmt.obj("schema")
    if schema is None:
        raise missing("text.format.schema")
    description = fmt.string("description")
    strict = fmt.boolean("strict")
    return ResponseFormat("json_schema", name, schema, strict), description, verbosity


def _metadata(value: dict[str, Any] | None) -> Mapping[str, str] | None:
    if value is None:
        return None
    checks.mapping(value, "metadata", max_items=_METADATA_PAIRS)
    for key, item in value.items():
        if len(key) > 64:
            raise out_of_range("metadata", f"key '{key[:64]}…' is longer than 64.")
        checks.string(item, f"metadata.{key}")
        if len(item) > 512:
            raise out_of_range(
                f"metadata.{key}", "string too long (at most 512 characters)."
            )
    return value


def _include(body: dict[str, Any]) -> tuple[str, ...]:
    values = Fields(body).array("include") or []
    for i, value in enumerate(values):
        checks.string(value, f"include[{i}]")
        _enum(value, f"include[{i}]", tuple(sorted(INCLUDES)))
    return tuple(values)


def conversation_param(value: Any) -> str | None:
    """``conversation``: an id, or ``{"id": ...}``."""
    if value is None:
        return None
    if isinstance(value, dict):
        found = Fields(value, "conversation.").string("id", required=True)
        return found or None
    return checks.string(value, "conversation") or None


@worded
def parse_responses_request(data: bytes) -> ResponsesRequest:
    body = parse_body(data)
    fields = Fields(body, source=Source(data))
    model = fields.string("model", required=True)
    if not model:
        raise missing("model")
    previous = fields.string("previous_response_id")
    conversation = conversation_param(body.get("conversation"))
    if conversation is not None and previous is not None:
        raise invalid(
            "Mutually exclusive parameters: Ensure you are only providing one of:"
            " 'previous_response_id' or 'conversation'.",
            code="mutually_exclusive_parameters",
        )
    chained = previous is not None or conversation is not None
    items = _input(body, chained=chained)
    tools, functions = _tools(body)
    tool_choice, forced = _tool_choice(body.get("tool_choice"), functions)
    text_format, description, verbosity = _text(body)
    reasoning = Fields(fields.obj("reasoning") or {}, "reasoning.")
    effort = reasoning.string("effort")
    _enum(effort, "reasoning.effort", _EFFORTS)
    summary = reasoning.string("summary")
    _enum(summary, "reasoning.summary", _SUMMARIES)
    truncation = fields.string("truncation") or "disabled"
    _enum(truncation, "truncation", ("auto", "disabled"))
    tier = fields.string("service_tier")
    _enum(tier, "service_tier", _TIERS)
    stream = fields.boolean("stream")
    store = fields.boolean("store", default=True)
    background = fields.boolean("background")
    if background and not store:
        raise invalid(
            "Background mode requires 'store' to be true: a background response"
            " is polled from the store.",
            param="background",
        )
    options = fields.obj("stream_options")
    if options is not None:
        if not stream:
            raise invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is"
                " enabled.",
                param="stream_options",
            )
        Fields(options, "stream_options.").boolean("include_obfuscation")
    return ResponsesRequest(
        model=model,
        input=items,
        instructions=fields.string("instructions"),
        tools=tools,
        functions=tuple(functions),
        tool_choice=tool_choice,
        forced_tool=forced,
        parallel_tool_calls=fields.boolean("parallel_tool_calls", default=True),
        text_format=text_format,
        format_description=description,
        verbosity=verbosity,
        # OpenAI's floor: a cut below 16 tokens is refused, not honoured.
        max_output_tokens=fields.integer("max_output_tokens", low=16),
        max_tool_calls=fields.integer("max_tool_calls", low=1),
        previous_response_id=previous,
        conversation=conversation,
        store=store,
        stream=stream,
        background=background,
        metadata=_metadata(fields.obj("metadata")),
        temperature=fields.number("temperature", low=0, high=2),
        top_p=fields.number("top_p", low=0, high=1),
        top_logprobs=fields.integer("top_logprobs", low=0, high=20),
        user=fields.string("user"),
        seed=fields.integer("seed", low=INT64_MIN, high=INT64_MAX),
        truncation=truncation,
        reasoning_effort=effort,
        reasoning_summary=summary,
        include=_include(body),
        service_tier=tier,
        safety_identifier=fields.string("safety_identifier"),
        prompt_cache_key=fields.string("prompt_cache_key"),
        body=body,
    )


@dataclass(frozen=True)
class ListParams:
    """``GET /v1/responses/{id}/input_items`` query parameters."""

    limit: int = 20
    order: str = "desc"
    after: str | None = None


@worded
def parse_list_params(args: Mapping[bytes, list[bytes]]) -> ListParams:
    """The query string, checked as OpenAI checks it (400 naming the param)."""

    def one(name: str) -> str | None:
        values = args.get(name.encode())
        return values[-1].decode("utf-8", "replace") if values else None

    limit_text = one("limit")
    limit = 20
    if limit_text is not None:
        if not _INTEGER.fullmatch(limit_text):
            raise wrong_type("limit", "an integer", limit_text)
        limit = check_integer(int(limit_text), "limit", low=1, high=100)
    order = one("order") or "desc"
    _enum(order, "order", ("asc", "desc"))
    return ListParams(limit, order, one("after"))
