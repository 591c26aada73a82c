"""``POST /v1beta/models/{model}:generateContent`` (stream and ``countTokens``
too): Google's body, read into the engine's chat request, or a 400 as the
Gemini API words it.

The engine knows one provider-neutral request, ``ChatRequest``; this module
maps Gemini's onto it: ``systemInstruction`` becomes a system message,
``contents`` (roles ``user`` / ``model``) user and assistant messages, their
``functionCall`` parts an assistant's tool calls and ``functionResponse``
parts tool messages, ``tools[].functionDeclarations`` function tools (their
OpenAPI-subset ``parameters`` converted to JSON Schema), ``toolConfig``
AUTO/ANY/NONE OpenAI's auto/required/none, and ``generationConfig`` the
limits, sampling, ``candidateCount`` (``n``) and structured output.
Fields are read in the API's camelCase or the proto's snake_case, as the
real API accepts both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mockai_tw.errors import ApiError
from mockai_tw.request.chat import ChatRequest, FunctionDef, Message, ResponseFormat
from mockai_tw.request.embeddings import EmbeddingsRequest
from mockai_tw.request.features import Thinking

_TOP = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "safetySettings",
        "cachedContent",
        "labels",
        "model",
        "generateContentRequest",
    }
)
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")
# Parts the mock takes but cannot read.
_OPAQUE = frozenset(
    {
        "inlineData",
        "fileData",
        "thought",
        "thoughtSignature",
        "executableCode",
        "codeExecutionResult",
        "videoMetadata",
    }
)
_MODES = {
    "AUTO": "auto",
    "MODE_UNSPECIFIED": "auto",
    "VALIDATED": "auto",
    "ANY": "required",
    "NONE": "none",
}
# Schema keys that mean the same in JSON Schema; the others are dropped
# (``propertyOrdering``, ``example``) or converted (``type``, ``nullable``).
_SAME = frozenset(
    {
        "description",
        "enum",
        "required",
        "title",
        "default",
        "pattern",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
    }
)
_INTEGERS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
_TYPES = frozenset(
    {"string", "number", "integer", "boolean", "array", "object", "null"}
)


@dataclass(frozen=True)
class GeminiRequest:
    """A Gemini ``generateContent`` request, and the chat request it means."""

    model: str
    chat: ChatRequest
    max_tokens: int | None
    stream: bool = False
    # ``thinkingConfig``: the model thinks first (its thoughts sent only
    # with ``includeThoughts``).
    thinking: Thinking | None = None


def problem(message: str) -> ApiError:
    """A 400 ``INVALID_ARGUMENT``."""
    return ApiError(400, message)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _field(body: Mapping[str, Any], name: str) -> Any:
    """``name`` (camelCase) or its snake_case spelling."""
    value = body.get(name)
    return body.get(_snake(name)) if value is None else value


_KINDS = {
    str: "TYPE_STRING",
    int: "TYPE_INT32",
    float: "TYPE_FLOAT",
    bool: "TYPE_BOOL",
    list: "a list",
    dict: "an object",
}


def _typed(value: Any, kind: type, path: str) -> Any:
    if kind is int and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)  # int64 fields arrive as JSON strings
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise problem(
            f"Invalid value at '{path}' ({_KINDS[kind]}), {json.dumps(value)}"
        )
    return value


def _get(body: Mapping[str, Any], name: str, kind: type, path: str) -> Any:
    value = _field(body, name)
    return None if value is None else _typed(value, kind, path + name)


def _body(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError:
        raise problem("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(value, dict):
        raise problem(
            'Invalid JSON payload received. Unknown name "": Root element must be'
            " a message."
        )
    for key in value:
        if key not in _TOP and _camel(key) not in _TOP:
            raise problem(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find'
                " field."
            )
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(r[:1].upper() + r[1:] for r in rest)


def json_schema(schema: Any, path: str) -> Any:
    """Gemini's OpenAPI-subset ``Schema`` as JSON Schema: type names lower
    case, ``nullable`` a ``null`` type, int64 bounds numbers."""
    node = _typed(schema, dict, path)
    out: dict[str, Any] = {}
    for raw_key, value in node.items():
        key = _camel(raw_key)
        where = f"{path}.{key}"
        if key == "type":
            name = _typed(value, str, where).lower()
            if name == "type_unspecified":
                continue
            if name not in _TYPES:
                raise problem(f"Invalid value at '{where}' (type.googleapis.com/Type)")
            out["type"] = name
        elif key == "properties":
            properties = _typed(value, dict, where)
            out["properties"] = {
                k: json_schema(v, f"{where}[{k!r}]") for k, v in properties.items()
            }
        elif key == "items":
            out["items"] = json_schema(value, where)
        elif key == "anyOf":
            out["anyOf"] = [
                json_schema(v, f"{where}[{i}]")
                for i, v in enumerate(_typed(value, list, where))
            ]
        elif key in _INTEGERS:
            out[key] = _typed(value, int, where)
        elif key == "format":
            # ``enum`` is Gemini's marker for a string enum; JSON Schema has none.
            if value != "enum":
                out["format"] = value
        elif key in _SAME:
            out[key] = value
    if _field(node, "nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    return out


@dataclass
class _Turn:
    role: str
    texts: list[str]
    calls: list[tuple[str, Any]]
    results: list[tuple[str, Any]]


def _turn(value: Any, i: int) -> _Turn:
    path = f"contents[{i}]"
    content = _typed(value, dict, path)
    role = _get(content, "role", str, f"{path}.") or "user"
    if role == "function":  # the older name for a turn of function responses
        role = "user"
    if role not in ("user", "model"):
        raise problem(
            f"Please use a valid role: user, model. (at '{path}.role': {role!r})"
        )
    parts = _get(content, "parts", list, f"{path}.")
    if not parts:
        raise problem(
            f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty."
        )
    turn = _Turn(role, [], [], [])
    for j, raw in enumerate(parts):
        where = f"{path}.parts[{j}]"
        part = _typed(raw, dict, where)
        text = _get(part, "text", str, f"{where}.")
        call = _get(part, "functionCall", dict, f"{where}.")
        result = _get(part, "functionResponse", dict, f"{where}.")
        if text is not None:
            if _field(part, "thought") is not True:
                turn.texts.append(text)
        elif call is not None:
            if role != "model":
                raise problem(
                    f"Please ensure that functionCall parts are in a model turn"
                    f" (at '{where}')."
                )
            name = _get(call, "name", str, f"{where}.functionCall.")
            if not name:
                raise problem(f"* {where}.functionCall.name: name is not specified")
            args = _get(call, "args", dict, f"{where}.functionCall.") or {}
            turn.calls.append((name, args))
        elif result is not None:
            name = _get(result, "name", str, f"{where}.functionResponse.")
            if not name:
                raise problem(f"* {where}.functionResponse.name: name is not specified")
            response = _field(result, "response")
            turn.results.append((name, {} if response is None else response))
        elif not any(_field(part, k) is not None for k in _OPAQUE):
            raise problem(
                f"* GenerateContentRequest.{where}.data: required oneof field 'data'"
                " must have one initialized field"
            )
    return turn


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _messages(turns: list[_Turn]) -> list[Message]:
    """The chat messages the turns stand for; a function response answers the
    previous model turn's call of that name (ids are made up: Gemini has none)."""
    out: list[Message] = []
    pending: dict[str, list[str]] = {}
    for i, turn in enumerate(turns):
        text = "".join(turn.texts)
        if turn.role == "model":
            raw: dict[str, Any] = {"role": "assistant", "content": text or None}
            pending = {}
            if turn.calls:
                calls = []
                for j, (name, args) in enumerate(turn.calls):
                    ident = f"call_{i}_{j}"
                    pending.setdefault(name, []).append(ident)
                    calls.append(
                        {
                            "id": ident,
                            "type": "function",
                            "function": {"name": name, "arguments": _dumps(args)},
                        }
                    )
                raw["tool_calls"] = calls
            out.append(Message("assistant", text, raw))
            continue
        for name, response in turn.results:
            waiting = pending.get(name)
            ident = waiting.pop(0) if waiting else f"call_{name}"
            body = _dumps(response)
            out.append(
                Message(
                    "tool",
                    body,
                    {"role": "tool", "tool_call_id": ident, "content": body},
                )
            )
        pending = {}
        if turn.texts or not turn.results:
            out.append(Message("user", text, {"role": "user", "content": text}))
    return out


def _system(body: Mapping[str, Any]) -> Message | None:
    value = _field(body, "systemInstruction")
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        content = _typed(value, dict, "system_instruction")
        parts = _get(content, "parts", list, "system_instruction.") or []
        texts = []
        for j, raw in enumerate(parts):
            part = _typed(raw, dict, f"system_instruction.parts[{j}]")
            piece = _get(part, "text", str, f"system_instruction.parts[{j}].")
            if piece is not None:
                texts.append(piece)
        text = "\n".join(texts)
    return Message("system", text, {"role": "system", "content": text})


def _tools(body: Mapping[str, Any]) -> tuple[FunctionDef, ...]:
    out: list[FunctionDef] = []
    for i, raw in enumerate(_get(body, "tools", list, "") or []):
        path = f"tools[{i}]"
        tool = _typed(raw, dict, path)
        declarations = _get(tool, "functionDeclarations", list, f"{path}.")
        others = [_camel(k) for k in tool if _camel(k) != "functionDeclarations"]
        if others:
            raise problem(
                f"Tool '{others[0]}' (at '{path}') is not supported by this mock;"
                " only functionDeclarations are."
            )
        for j, value in enumerate(declarations or []):
            where = f"{path}.function_declarations[{j}]"
            declaration = _typed(value, dict, where)
            name = _get(declaration, "name", str, f"{where}.")
            if not name or not _FUNCTION_NAME.match(name):
                raise problem(
                    f"* GenerateContentRequest.{where}.name: Invalid function name."
                    " Must start with a letter or an underscore. Must be a-z, A-Z,"
                    " 0-9, or contain underscores, dots, colons and dashes, with a"
                    " maximum length of 64."
                )
            schema = _field(declaration, "parametersJsonSchema")
            if schema is not None:
                parameters = _typed(schema, dict, f"{where}.parameters_json_schema")
            elif _field(declaration, "parameters") is not None:
                parameters = json_schema(
                    _field(declaration, "parameters"), f"{where}.parameters"
                )
            else:
                parameters = {"type": "object", "properties": {}}
            out.append(
                FunctionDef(
                    name=name,
                    parameters=parameters,
                    description=_get(declaration, "description", str, f"{where}."),
                )
            )
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise problem("Duplicate function declaration names are not allowed.")
    return tuple(out)


def _tool_config(
    body: Mapping[str, Any], tools: tuple[FunctionDef, ...]
) -> tuple[str, str | None, tuple[FunctionDef, ...]]:
    """(OpenAI's mode, the forced function, the functions it may call)."""
    config = _get(body, "toolConfig", dict, "")
    calling = (
        _get(config, "functionCallingConfig", dict, "tool_config.") if config else None
    )
    if calling is None:
        return ("auto" if tools else "none"), None, tools
    path = "tool_config.function_calling_config."
    mode_name = (_get(calling, "mode", str, path) or "AUTO").upper()
    if mode_name not in _MODES:
        raise problem(
            f"Invalid value at '{path}mode' (type.googleapis.com/"
            f"google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode),"
            f" {json.dumps(mode_name)}"
        )
    mode = _MODES[mode_name]
    allowed = _get(calling, "allowedFunctionNames", list, path)
    if not allowed:
        return mode, None, tools
    if mode_name != "ANY":
        raise problem(
            "Function calling config allowed_function_names should only be set"
            " when the mode is ANY."
        )
    known = {t.name for t in tools}
    for k, name in enumerate(allowed):
        _typed(name, str, f"{path}allowed_function_names[{k}]")
        if name not in known:
            raise problem(
                f"Function calling config allowed_function_names contains '{name}',"
                " which is not declared in tools."
            )
    offered = tuple(t for t in tools if t.name in allowed)
    forced = offered[0].name if len(offered) == 1 else None
    return mode, forced, offered


def _number(
    config: Mapping[str, Any], name: str, low: float, high: float
) -> float | None:
    value = _get(config, name, float, "generation_config.")
    if value is not None and not low <= value <= high:
        raise problem(
            f"Invalid value at 'generation_config.{_snake(name)}': {value:g} is out"
            f" of range [{low:g}, {high:g}]."
        )
    return value


def _format(config: Mapping[str, Any]) -> ResponseFormat:
    mime = _get(config, "responseMimeType", str, "generation_config.")
    raw_json = _field(config, "responseJsonSchema")
    raw_schema = _field(config, "responseSchema")
    if mime in (None, "", "text/plain"):
        if raw_json is not None or raw_schema is not None:
            raise problem(
                "response_mime_type must be application/json (or text/x.enum) when"
                " response_schema is set."
            )
        return ResponseFormat()
    if mime != "application/json":
        raise problem(
            f"Unsupported response_mime_type '{mime}': this mock supports"
            " 'text/plain' and 'application/json'."
        )
    if raw_json is not None:
        schema = _typed(raw_json, dict, "generation_config.response_json_schema")
    elif raw_schema is not None:
        schema = json_schema(raw_schema, "generation_config.response_schema")
    else:
        return ResponseFormat("json_object")
    return ResponseFormat("json_schema", name="response", schema=schema, strict=True)


# The widest thinking budget any Gemini model takes (2.5 Pro's).
MAX_THINKING_BUDGET = 32768
_LEVELS = frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})


def _thinking(config: Mapping[str, Any]) -> Thinking | None:
    """``thinkingConfig``: a budget of 0 turns thinking off, -1 (or none
    given) lets the model decide; thoughts are sent with ``includeThoughts``."""
    value = _get(config, "thinkingConfig", dict, "generation_config.")
    if value is None:
        return None
    path = "generation_config.thinking_config."
    budget = _get(value, "thinkingBudget", int, path)
    shown = bool(_get(value, "includeThoughts", bool, path))
    level = _get(value, "thinkingLevel", str, path)
    if level is not None and level.upper() not in _LEVELS:
        raise problem(
            f"Invalid value at '{path}thinking_level' (type.googleapis.com/"
            f"google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel),"
            f" {json.dumps(level)}"
        )
    if budget is not None and level is not None:
        raise problem("You can only set one of thinking budget and thinking level.")
    if budget is not None and not -1 <= budget <= MAX_THINKING_BUDGET:
        raise problem(
            f"The thinking budget {budget} is invalid: it must be -1 (dynamic) or"
            f" between 0 and {MAX_THINKING_BUDGET}."
        )
    if budget == 0:
        return None
    return Thinking(budget=None if budget in (None, -1) else budget, shown=shown)


def parse_generate_request(
    data: bytes, model: str | None, stream: bool = False, counting: bool = False
) -> GeminiRequest:
    """The body of ``generateContent``; ``model`` comes from the path."""
    body = _body(data)
    if counting and _field(body, "generateContentRequest") is not None:
        body = _typed(
            _field(body, "generateContentRequest"), dict, "generate_content_request"
        )
    if not model:
        raise problem("* GenerateContentRequest.model: model is required.")
    raw_contents = _get(body, "contents", list, "")
    if not raw_contents:
        raise problem("* GenerateContentRequest.contents: contents is not specified")
    turns = [_turn(c, i) for i, c in enumerate(raw_contents)]
    messages: list[Message] = []
    system = _system(body)
    if system is not None:
        messages.append(system)
    messages.extend(_messages(turns))
    config = _get(body, "generationConfig", dict, "") or {}
    path = "generation_config."
    max_tokens = _get(config, "maxOutputTokens", int, path)
    if max_tokens is not None and max_tokens < 1:
        raise problem(
            "Invalid value at 'generation_config.max_output_tokens': it must be"
            " positive."
        )
    stops = _get(config, "stopSequences", list, path) or []
    if len(stops) > 5:
        raise problem("generation_config.stop_sequences: at most 5 are allowed.")
    for k, stop in enumerate(stops):
        _typed(stop, str, f"{path}stop_sequences[{k}]")
    candidates = _get(config, "candidateCount", int, path) or 1
    if not 1 <= candidates <= 8:
        raise problem("Invalid value at 'generation_config.candidate_count': 1 to 8.")
    if stream and candidates > 1:
        raise problem(
            "candidate_count > 1 is not supported by this mock on"
            " streamGenerateContent; use generateContent."
        )
    temperature = _number(config, "temperature", 0, 2)
    top_p = _number(config, "topP", 0, 1)
    top_k = _get(config, "topK", int, path)
    if top_k is not None and top_k < 1:
        raise problem(
            "Invalid value at 'generation_config.top_k': it must be positive."
        )
    seed = _get(config, "seed", int, path)
    response_format = _format(config)
    tools = _tools(body)
    mode, forced, offered = _tool_config(body, tools)
    chat = ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=stream,
        n=candidates,
        max_tokens=max_tokens,
        stop=tuple(stops),
        seed=seed,
        temperature=temperature,
        top_p=top_p,
        tools=offered,
        tool_choice=mode,
        forced_tool=forced,
        response_format=response_format,
        body=body,
    )
    return GeminiRequest(
        model=model,
        chat=chat,
        max_tokens=max_tokens,
        stream=stream,
        thinking=_thinking(config),
    )


def parse_stream_request(data: bytes, model: str | None) -> GeminiRequest:
    """``streamGenerateContent``: the same body, answered as a stream."""
    return parse_generate_request(data, model, stream=True)


def parse_count_request(data: bytes, model: str | None) -> GeminiRequest:
    """``countTokens``: ``contents`` (or a whole ``generateContentRequest``)."""
    return parse_generate_request(data, model, counting=True)


# --- embedContent / batchEmbedContents -------------------------------------------


@dataclass(frozen=True)
class GeminiEmbedRequest:
    """``embedContent`` (one content) or ``batchEmbedContents`` (several), as
    the engine's embeddings request."""

    model: str
    embeddings: EmbeddingsRequest
    batch: bool


def _content_text(value: Any, path: str) -> str:
    content = _typed(value, dict, path)
    parts = _get(content, "parts", list, f"{path}.")
    if not parts:
        raise problem(f"* {path}.parts: contents.parts must not be empty.")
    texts = []
    for j, raw in enumerate(parts):
        part = _typed(raw, dict, f"{path}.parts[{j}]")
        text = _get(part, "text", str, f"{path}.parts[{j}].")
        if text is not None:
            texts.append(text)
    return " ".join(texts)


def _embed_one(body: Mapping[str, Any], path: str) -> tuple[str, int | None]:
    if _field(body, "content") is None:
        raise problem(f"* {path}content: content is not specified")
    text = _content_text(_field(body, "content"), f"{path}content")
    dimensions = _get(body, "outputDimensionality", int, path)
    if dimensions is not None and dimensions < 1:
        raise problem(
            f"Invalid value at '{path}output_dimensionality': it must be positive."
        )
    return text, dimensions


def _embeddings(model: str, items: list[tuple[str, int | None]]) -> EmbeddingsRequest:
    sizes = {d for _, d in items}
    if len(sizes) > 1:
        raise problem(
            "All requests of a batch must ask for the same output_dimensionality"
            " in this mock."
        )
    return EmbeddingsRequest(
        model=model, inputs=tuple(t for t, _ in items), dimensions=sizes.pop()
    )


def parse_embed_request(data: bytes, model: str | None) -> GeminiEmbedRequest:
    """``embedContent``: ``{"content": {"parts": [...]}, "outputDimensionality"}``."""
    body = _body_of(data, _EMBED_FIELDS)
    if not model:
        raise problem("* EmbedContentRequest.model: model is required.")
    item = _embed_one(body, "")
    return GeminiEmbedRequest(model, _embeddings(model, [item]), batch=False)


def parse_batch_embed_request(data: bytes, model: str | None) -> GeminiEmbedRequest:
    """``batchEmbedContents``: ``{"requests": [EmbedContentRequest, ...]}``."""
    body = _body_of(data, frozenset({"requests"}))
    if not model:
        raise problem("* BatchEmbedContentsRequest.model: model is required.")
    requests = _get(body, "requests", list, "")
    if not requests:
        raise problem("* BatchEmbedContentsRequest.requests: requests is not specified")
    if len(requests) > 100:
        raise problem(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in"
            " one batch"
        )
    items = []
    for i, raw in enumerate(requests):
        request = _typed(raw, dict, f"requests[{i}]")
        named = _get(request, "model", str, f"requests[{i}].")
        if named is not None and named.removeprefix("models/") != model:
            raise problem(
                f"Model in requests[{i}] ({named}) does not match the model in the"
                f" URL (models/{model})."
            )
        items.append(_embed_one(request, f"requests[{i}]."))
    return GeminiEmbedRequest(model, _embeddings(model, items), batch=True)


_EMBED_FIELDS = frozenset(
    {"content", "taskType", "title", "outputDimensionality", "model"}
)


def _body_of(data: bytes, known: frozenset[str]) -> dict[str, Any]:
    try:
        value = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError:
        raise problem("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(value, dict):
        raise problem("Invalid JSON payload received. Root element must be a message.")
    for key in value:
        if key not in known and _camel(key) not in known:
            raise problem(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find'
                " field."
            )
    return value
