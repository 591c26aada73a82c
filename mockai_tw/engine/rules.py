"""Scenario rules: a test says what the mock answers, and the first match wins.

A rule is a frozen value parsed from the config's ``rules:`` list (or from the
control API), every mistake named by its key path
(``rules[3].match.content.regex: invalid regex ...``).  The ``RuleBook`` keeps
the rules in order with their run-time state (match counts, ``times`` left,
expiry); the engine asks it once per request and renders the answer it gets
(templates, lorem, fixtures, scripted tool calls, JSON) into its plan.
Pure: no Twisted, no clock of its own, no I/O except reading fixtures while
parsing, so a reload re-reads them and a request never touches the disk.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from mockai_tw.engine import schema_gen, tokenizer
from mockai_tw.errors import ApiError, describe
from mockai_tw.fault_kinds import FAULT_KINDS
from mockai_tw.request.chat import ChatRequest, FunctionDef
from mockai_tw.request.completions import CompletionRequest, Prompt

#: Every endpoint a rule can name, and the paths that mean the same.
ENDPOINTS = ("chat", "completions", "responses", "embeddings", "moderations")
#: Endpoints that answer with text: the default for rules that do.
TEXT_ENDPOINTS = ("chat", "completions", "responses")
_ENDPOINT_ALIASES = {
    "chat.completions": "chat",
    "chat/completions": "chat",
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/moderations": "moderations",
}
PICKS = ("random", "round_robin", "seeded")
THEN = ("repeat_last", "cycle")
CHUNKINGS = ("char", "word", "token")
ANSWER_KINDS = (
    "text",
    "choices",
    "echo",
    "lorem",
    "file",
    "tool_calls",
    "json",
    "json_schema",
    "error",
    "sequence",
)
_TEXT_OPS = ("equals", "contains", "regex", "glob")
# Fixtures are read whole at load; a bound keeps a typo from reading a disk image.
MAX_FIXTURE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class RuleError(ValueError):
    """A rule is wrong; ``str()`` names the key path, like ConfigError."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


_kind = describe


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(path, f"must be a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise RuleError(path, f"keys must be strings, got {_kind(key)}")
    return value


def _known(value: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
    for key in value:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise RuleError(where, f"unknown key (known keys: {', '.join(known)})")


def _string(value: Any, path: str, *, nonempty: bool = True) -> str:
    if not isinstance(value, str):
        raise RuleError(path, f"must be a string, got {_kind(value)}")
    if nonempty and not value:
        raise RuleError(path, "must not be empty")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(path, f"must be a boolean (true/false), got {_kind(value)}")
    return value


def _int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise RuleError(path, f"must be between {low} and {high}")
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(path, f"must be a number, got {_kind(value)}")
    if value != value or not low <= value <= high:
        raise RuleError(path, f"must be between {low:g} and {high:g}")
    return float(value)


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_string(value, path),)
    if not isinstance(value, list) or not value:
        raise RuleError(
            path, f"must be a string or a non-empty list, got {_kind(value)}"
        )
    return tuple(_string(v, f"{path}[{i}]") for i, v in enumerate(value))


# --- the request as rules see it ---------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """What a rule can look at: one small value per request, any endpoint.

    ``headers`` has lower-cased names; ``messages`` are (role, text) pairs in
    order (a legacy prompt or an embeddings input is one ``user`` message).
    """

    endpoint: str
    model: str
    messages: tuple[tuple[str, str], ...] = ()
    tools: tuple[FunctionDef, ...] = ()
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
    user: str | None = None
    metadata: Mapping[str, Any] | None = None
    seed: int | None = None
    # The request's JSON Schema for the answer (``response_format``), if any.
    response_schema: Mapping[str, Any] | None = None
    response_name: str = ""

    @property
    def last_user_text(self) -> str:
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""

    @property
    def system_text(self) -> str:
        return "\n".join(t for r, t in self.messages if r in ("system", "developer"))

    @property
    def last_message(self) -> str:
        return self.messages[-1][1] if self.messages else ""

    @property
    def last_role(self) -> str:
        return self.messages[-1][0] if self.messages else ""

    def function(self, name: str) -> FunctionDef:
        """The offered function called ``name`` (a bare one when not offered)."""
        for function in self.tools:
            if function.name == name:
                return function
        return FunctionDef(name=name)


def chat_context(
    request: ChatRequest,
    headers: Mapping[str, str] = NO_HEADERS,
    endpoint: str = "chat",
) -> RequestContext:
    fmt = request.response_format
    return RequestContext(
        endpoint=endpoint,
        model=request.model,
        messages=tuple((m.role, m.text) for m in request.messages),
        tools=request.tools + request.functions,
        stream=request.stream,
        headers=headers,
        user=request.user,
        metadata=request.metadata,
        seed=request.seed,
        response_schema=fmt.schema if fmt.type == "json_schema" else None,
        response_name=fmt.name or "",
    )


def prompt_context(
    request: CompletionRequest, prompt: Prompt, headers: Mapping[str, str] = NO_HEADERS
) -> RequestContext:
    """A legacy completion's prompt is its one user message."""
    return RequestContext(
        endpoint="completions",
        model=request.model,
        messages=(("user", prompt.text),),
        stream=request.stream,
        headers=headers,
        user=request.user,
        seed=request.seed,
    )


def input_context(
    endpoint: str,
    model: str,
    texts: Sequence[str],
    headers: Mapping[str, str] = NO_HEADERS,
    user: str | None = None,
) -> RequestContext:
    """Embeddings and moderations: each input text is a user message."""
    return RequestContext(
        endpoint=endpoint,
        model=model,
        messages=tuple(("user", t) for t in texts),
        headers=headers,
        user=user,
    )


# --- conditions --------------------------------------------------------------


@dataclass(frozen=True)
class TextCondition:
    """``equals`` / ``contains`` / ``regex`` (searched) / ``glob``, optionally
    ignoring case."""

    op: str
    value: str
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def test(self, text: str) -> re.Match[str] | bool | None:
        if self.pattern is not None:
            if self.op == "glob":
                return self.pattern.fullmatch(text) is not None
            return self.pattern.search(text)
        if self.ignore_case:
            text, value = text.casefold(), self.value.casefold()
        else:
            value = self.value
        if self.op == "equals":
            return text == value
        return value in text

    @property
    def groups(self) -> int:
        return self.pattern.groups if self.op == "regex" and self.pattern else 0

    @property
    def names(self) -> frozenset[str]:
        if self.op != "regex" or self.pattern is None:
            return frozenset()
        return frozenset(self.pattern.groupindex)


def text_condition(raw: Any, path: str, default_op: str) -> TextCondition:
    """A bare string means ``default_op``; a mapping names its operator."""
    if isinstance(raw, str):
        op, value, ignore_case = default_op, raw, False
    else:
        spec = _mapping(raw, path)
        _known(spec, path, (*_TEXT_OPS, "ignore_case"))
        ops = [k for k in _TEXT_OPS if k in spec]
        if len(ops) != 1:
            raise RuleError(path, f"give exactly one of {', '.join(_TEXT_OPS)}")
        op = ops[0]
        value = _string(spec[op], f"{path}.{op}", nonempty=op != "equals")
        ignore_case = _bool(spec.get("ignore_case", False), f"{path}.ignore_case")
    flags = re.IGNORECASE if ignore_case else 0
    pattern = None
    if op == "regex":
        try:
            pattern = re.compile(value, flags)
        except re.error as error:
            raise RuleError(
                f"{path}.regex" if not isinstance(raw, str) else path,
                f"invalid regex {value!r}: {error}",
            ) from None
    elif op == "glob":
        pattern = re.compile(fnmatch.translate(value), flags)
    return TextCondition(op, value, ignore_case, pattern)


@dataclass(frozen=True)
class Captures:
    """What the regex conditions captured: ``{{0}}``, ``{{1}}``, ``{{name}}``."""

    groups: tuple[str | None, ...] = ()
    named: Mapping[str, str | None] = field(default_factory=lambda: NO_HEADERS)


NO_CAPTURES = Captures()


@dataclass(frozen=True)
class Conditions:
    """A rule's ``match:``; every condition given must hold."""

    # None: the default for the answer (text endpoints, or any for errors).
    endpoints: tuple[str, ...] | None = None
    model: tuple[TextCondition, ...] = ()
    content: TextCondition | None = None
    message: TextCondition | None = None
    system: TextCondition | None = None
    last_role: tuple[str, ...] = ()
    tools: bool | None = None
    tool_names: tuple[str, ...] = ()
    stream: bool | None = None
    headers: tuple[tuple[str, TextCondition], ...] = ()
    user: TextCondition | None = None
    metadata: tuple[tuple[str, TextCondition], ...] = ()

    def regexes(self) -> Iterator[TextCondition]:
        """The regex conditions, in the order their captures are taken."""
        singles = (self.content, self.message, self.system, self.user)
        for condition in (
            *singles,
            *(c for _, c in self.headers),
            *(c for _, c in self.metadata),
        ):
            if condition is not None and condition.op == "regex":
                yield condition

    def _texts(self, ctx: RequestContext) -> Iterator[tuple[TextCondition, str | None]]:
        """Each text condition with the text it tests, in capture order."""
        if self.content is not None:
            yield self.content, ctx.last_user_text
        if self.message is not None:
            yield self.message, None
        if self.system is not None:
            yield self.system, ctx.system_text
        if self.user is not None:
            yield self.user, ctx.user
        for name, condition in self.headers:
            yield condition, ctx.headers.get(name)
        for key, condition in self.metadata:
            value = (ctx.metadata or {}).get(key)
            yield condition, None if value is None else _as_text(value)

    def evaluate(
        self, ctx: RequestContext, endpoints: Sequence[str]
    ) -> Captures | None:
        """The captures if every condition holds, else None."""
        if ctx.endpoint not in endpoints:
            return None
        if self.model and not any(c.test(ctx.model) for c in self.model):
            return None
        if self.stream is not None and ctx.stream != self.stream:
            return None
        if self.last_role and ctx.last_role not in self.last_role:
            return None
        if self.tools is not None and bool(ctx.tools) != self.tools:
            return None
        if self.tool_names:
            offered = {f.name for f in ctx.tools}
            if not all(n in offered for n in self.tool_names):
                return None
        found: list[re.Match[str]] = []
        result: re.Match[str] | bool | None
        for condition, text in self._texts(ctx):
            if condition is self.message:
                # Any message: the latest that matches gives the captures.
                result = next(
                    (r for _, t in reversed(ctx.messages) if (r := condition.test(t))),
                    None,
                )
            elif text is None:
                return None
            else:
                result = condition.test(text)
            if not result:
                return None
            if isinstance(result, re.Match):
                found.append(result)
        if not found:
            return NO_CAPTURES
        named: dict[str, str | None] = {}
        for m in reversed(found):
            named.update(m.groupdict())
        first = found[0]
        return Captures((first.group(0), *first.groups()), named)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _endpoints(raw: Any, path: str) -> tuple[str, ...] | None:
    names = _strings(raw, path)
    out: list[str] = []
    for i, name in enumerate(names):
        where = path if isinstance(raw, str) else f"{path}[{i}]"
        if name in ("*", "any"):
            return None
        name = _ENDPOINT_ALIASES.get(name, name)
        if name not in ENDPOINTS:
            raise RuleError(
                where, f"unknown endpoint {name!r} (known: {', '.join(ENDPOINTS)})"
            )
        out.append(name)
    return tuple(out)


def _model(raw: Any, path: str) -> tuple[TextCondition, ...]:
    def one(value: Any, where: str) -> TextCondition:
        if isinstance(value, str):
            op = "glob" if any(c in value for c in "*?[") else "equals"
            return text_condition(value, where, op)
        return text_condition(value, where, "equals")

    if isinstance(raw, list):
        if not raw:
            raise RuleError(path, "must not be empty")
        return tuple(one(v, f"{path}[{i}]") for i, v in enumerate(raw))
    return (one(raw, path),)


def _keyed(raw: Any, path: str, lower: bool) -> tuple[tuple[str, TextCondition], ...]:
    spec = _mapping(raw, path)
    out = []
    for key, value in spec.items():
        name = key.lower() if lower else key
        out.append((name, text_condition(value, f"{path}.{key}", "equals")))
    return tuple(out)


_MATCH_KEYS = (
    "endpoint",
    "model",
    "content",
    "message",
    "system",
    "last_role",
    "tools",
    "stream",
    "headers",
    "user",
    "metadata",
)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def parse_conditions(raw: Any, path: str) -> Conditions:
    if raw is None:
        return Conditions()
    spec = _mapping(raw, path)
    _known(spec, path, _MATCH_KEYS)
    at = f"{path}.".__add__
    tools: bool | None = None
    tool_names: tuple[str, ...] = ()
    if "tools" in spec:
        if isinstance(spec["tools"], bool):
            tools = spec["tools"]
        else:
            tool_names = _strings(spec["tools"], at("tools"))
    last_role: tuple[str, ...] = ()
    if "last_role" in spec:
        last_role = _strings(spec["last_role"], at("last_role"))
        for role in last_role:
            if role not in _ROLES:
                raise RuleError(
                    at("last_role"),
                    f"unknown role {role!r} (known: {', '.join(_ROLES)})",
                )

    def text(key: str, default_op: str) -> TextCondition | None:
        if key not in spec:
            return None
        return text_condition(spec[key], at(key), default_op)

    return Conditions(
        endpoints=_endpoints(spec["endpoint"], at("endpoint"))
        if "endpoint" in spec
        else None,
        model=_model(spec["model"], at("model")) if "model" in spec else (),
        content=text("content", "contains"),
        message=text("message", "contains"),
        system=text("system", "contains"),
        last_role=last_role,
        tools=tools,
        tool_names=tool_names,
        stream=_bool(spec["stream"], at("stream")) if "stream" in spec else None,
        headers=_keyed(spec["headers"], at("headers"), True)
        if "headers" in spec
        else (),
        user=text("user", "equals"),
        metadata=_keyed(spec["metadata"], at("metadata"), False)
        if "metadata" in spec
        else (),
    )


# --- templates ---------------------------------------------------------------

_FIELD = re.compile(r"\{\{\s*([A-Za-z0-9_]+(?:\.[A-Za-z0-9_.:-]+)?)\s*\}\}")
#: Request fields a template can use besides the captures.
TEMPLATE_FIELDS = (
    "model",
    "endpoint",
    "user",
    "content",
    "last_message",
    "system",
    "count",
)
_PREFIXED = ("header", "metadata")


@dataclass(frozen=True)
class Template:
    """Text with ``{{field}}`` placeholders; anything else is literal text."""

    parts: tuple[str, ...]
    # parts[i] is a field name where fields[i] is True.
    fields: tuple[bool, ...]

    @property
    def text(self) -> str:
        return "".join(
            p if not f else "{{" + p + "}}"
            for p, f in zip(self.parts, self.fields, strict=True)
        )

    def render(self, lookup: Callable[[str], str]) -> str:
        if len(self.parts) == 1 and not self.fields[0]:
            return self.parts[0]
        return "".join(
            lookup(p) if f else p for p, f in zip(self.parts, self.fields, strict=True)
        )


def parse_template(
    text: str, path: str, groups: int = -1, names: frozenset[str] = frozenset()
) -> Template:
    """Check every field against what the rule can capture or the request has.

    ``groups`` is the most groups any of the rule's regexes has (-1: no regex).
    """
    parts: list[str] = []
    fields: list[bool] = []
    last = 0
    for m in _FIELD.finditer(text):
        name = m.group(1)
        prefix, dot, _rest = name.partition(".")
        if name.isdigit():
            if int(name) > groups:
                if groups < 0:
                    problem = "the rule's match has no regex to capture from"
                else:
                    problem = f"the rule's regexes capture groups 0 to {groups}"
                raise RuleError(path, f"template field {{{{{name}}}}}: {problem}")
        elif dot:
            if prefix not in _PREFIXED or not _rest:
                raise RuleError(
                    path,
                    _unknown_field(name, names),
                )
        elif name not in TEMPLATE_FIELDS and name not in names:
            raise RuleError(
                path,
                _unknown_field(name, names),
            )
        if m.start() > last:
            parts.append(text[last : m.start()])
            fields.append(False)
        parts.append(name)
        fields.append(True)
        last = m.end()
    if last < len(text) or not parts:
        parts.append(text[last:])
        fields.append(False)
    return Template(tuple(parts), tuple(fields))


def _unknown_field(name: str, names: frozenset[str]) -> str:
    return f"unknown template field {{{{{name}}}}} (known: {_known_fields(names)})"


def _known_fields(names: frozenset[str]) -> str:
    return ", ".join(
        [
            *TEMPLATE_FIELDS,
            "header.NAME",
            "metadata.KEY",
            "0, 1, ... (regex groups)",
            *sorted(names),
        ]
    )


class _Lookup:
    """Resolves template fields for one request; a missing value is ""."""

    def __init__(self, ctx: RequestContext, captures: Captures, count: int) -> None:
        self.ctx = ctx
        self.captures = captures
        self.count = count

    def __call__(self, name: str) -> str:
        ctx = self.ctx
        if name.isdigit():
            index = int(name)
            groups = self.captures.groups
            value = groups[index] if index < len(groups) else None
            return value or ""
        if name in self.captures.named:
            return self.captures.named[name] or ""
        if name == "model":
            return ctx.model
        if name == "endpoint":
            return ctx.endpoint
        if name == "user":
            return ctx.user or ""
        if name == "content":
            return ctx.last_user_text
        if name == "last_message":
            return ctx.last_message
        if name == "system":
            return ctx.system_text
        if name == "count":
            return str(self.count)
        prefix, _, key = name.partition(".")
        if prefix == "header":
            return ctx.headers.get(key.lower(), "")
        if prefix == "metadata":
            value = (ctx.metadata or {}).get(key)
            return "" if value is None else _as_text(value)
        return ""


def _json_template(value: Any, path: str, groups: int, names: frozenset[str]) -> Any:
    """A JSON value whose strings are templates."""
    if isinstance(value, str):
        return parse_template(value, path, groups, names)
    if isinstance(value, list):
        return [
            _json_template(v, f"{path}[{i}]", groups, names)
            for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RuleError(path, f"keys must be strings, got {_kind(key)}")
            out[key] = _json_template(item, f"{path}.{key}", groups, names)
        return out
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, float) and (
            value != value or value in (float("inf"), float("-inf"))
        ):
            raise RuleError(path, "must be a finite number")
        return value
    raise RuleError(path, f"must be JSON, got {_kind(value)}")


def _render_json(value: Any, lookup: Callable[[str], str]) -> Any:
    if isinstance(value, Template):
        return value.render(lookup)
    if isinstance(value, list):
        return [_render_json(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: _render_json(v, lookup) for k, v in value.items()}
    return value


# --- answers -----------------------------------------------------------------


@dataclass(frozen=True)
class TextAnswer:
    template: Template
    kind = "text"


@dataclass(frozen=True)
class ChoicesAnswer:
    items: tuple[Template, ...]
    pick: str = "random"
    seed: int = 0
    kind = "choices"


@dataclass(frozen=True)
class EchoAnswer:
    kind = "echo"


@dataclass(frozen=True)
class LoremAnswer:
    tokens: int
    kind = "lorem"


@dataclass(frozen=True)
class FileAnswer:
    path: str
    text: str
    kind = "file"


@dataclass(frozen=True)
class ToolCallSpec:
    name: str
    # A JSON template (a string one is sent as rendered); None: generated
    # from the offered tool's schema.
    arguments: Any = None


@dataclass(frozen=True)
class ToolCallsAnswer:
    calls: tuple[ToolCallSpec, ...]
    kind = "tool_calls"


@dataclass(frozen=True, eq=False)
class JsonAnswer:
    # Given: a JSON template. Generated: from ``schema``, or from the
    # request's ``response_format`` schema when ``from_request``.
    value: Any = None
    schema: Mapping[str, Any] | None = None
    from_request: bool = False
    kind = "json"


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    message: Template
    type: str
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
    kind = "error"


@dataclass(frozen=True)
class SequenceAnswer:
    steps: tuple[Answer, ...]
    then: str = "repeat_last"
    kind = "sequence"

    def step(self, count: int) -> Answer:
        """The answer for the ``count``-th match (1-based)."""
        index = count - 1
        if self.then == "cycle":
            return self.steps[index % len(self.steps)]
        return self.steps[min(index, len(self.steps) - 1)]


Answer = (
    TextAnswer
    | ChoicesAnswer
    | EchoAnswer
    | LoremAnswer
    | FileAnswer
    | ToolCallsAnswer
    | JsonAnswer
    | ErrorAnswer
    | SequenceAnswer
)

_ERROR_DEFAULTS: Mapping[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to make this request."),
    404: ("invalid_request_error", None, "Not found."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}


def _error_defaults(status: int) -> tuple[str, str | None, str]:
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    if status >= 500:
        return ("server_error", None, "The server had an error.")
    return ("invalid_request_error", None, "The request was refused.")


class _Parser:
    """Parses one rule's answer, knowing what its match can capture."""

    def __init__(
        self, base_dir: str | None, groups: int, names: frozenset[str]
    ) -> None:
        self.base_dir = base_dir
        self.groups = groups
        self.names = names

    def template(self, value: Any, path: str) -> Template:
        return parse_template(
            _string(value, path, nonempty=False), path, self.groups, self.names
        )

    def answer(self, raw: Any, path: str, nested: bool = False) -> Answer:
        if isinstance(raw, str):
            return TextAnswer(self.template(raw, path))
        spec = _mapping(raw, path)
        kinds = [k for k in ANSWER_KINDS if k in spec]
        if not kinds:
            unknown = [k for k in spec if k not in ("pick", "seed", "then")]
            if unknown:
                raise RuleError(
                    f"{path}.{unknown[0]}",
                    f"unknown answer kind (known kinds: {', '.join(ANSWER_KINDS)})",
                )
            raise RuleError(path, f"give one answer kind ({', '.join(ANSWER_KINDS)})")
        if len(kinds) > 1:
            raise RuleError(path, f"give one answer kind, not {' and '.join(kinds)}")
        kind = kinds[0]
        extra = {"choices": ("pick", "seed"), "sequence": ("then",)}.get(kind, ())
        _known(spec, path, (kind, *extra))
        at = f"{path}.{kind}"
        value = spec[kind]
        if kind == "text":
            return TextAnswer(self.template(value, at))
        if kind == "choices":
            if not isinstance(value, list) or not value:
                raise RuleError(at, f"must be a non-empty list, got {_kind(value)}")
            pick = spec.get("pick", "random")
            if pick not in PICKS:
                raise RuleError(
                    f"{path}.pick", f"must be one of {', '.join(PICKS)}; got {pick!r}"
                )
            seed = _int(spec.get("seed", 0), f"{path}.seed", -(2**63), 2**63 - 1)
            items = tuple(self.template(v, f"{at}[{i}]") for i, v in enumerate(value))
            return ChoicesAnswer(items, pick, seed)
        if kind == "echo":
            if value is not True:
                raise RuleError(at, "must be true")
            return EchoAnswer()
        if kind == "lorem":
            return LoremAnswer(_int(value, at, 1, 100_000))
        if kind == "file":
            return self.file(value, at)
        if kind == "tool_calls":
            return self.tool_calls(value, at)
        if kind == "json":
            return JsonAnswer(value=_json_template(value, at, self.groups, self.names))
        if kind == "json_schema":
            if value == "request":
                return JsonAnswer(from_request=True)
            schema = _mapping(value, at)
            try:
                schema_gen.check_schema(schema)
            except schema_gen.SchemaError as error:
                raise RuleError(at, f"invalid schema: {error}") from None
            return JsonAnswer(schema=schema)
        if kind == "error":
            return self.error(value, at)
        if nested:
            raise RuleError(at, "a sequence cannot hold another sequence")
        if not isinstance(value, list) or not value:
            raise RuleError(
                at, f"must be a non-empty list of answers, got {_kind(value)}"
            )
        then = spec.get("then", "repeat_last")
        if then not in THEN:
            raise RuleError(
                f"{path}.then", f"must be one of {', '.join(THEN)}; got {then!r}"
            )
        steps = tuple(
            self.answer(v, f"{at}[{i}]", nested=True) for i, v in enumerate(value)
        )
        return SequenceAnswer(steps, then)

    def file(self, value: Any, path: str) -> FileAnswer:
        name = _string(value, path)
        if os.path.isabs(name):
            raise RuleError(
                path, f"{name!r} must be relative to the config file's directory"
            )
        base = os.path.realpath(self.base_dir or os.getcwd())
        full = os.path.realpath(os.path.join(base, name))
        if os.path.commonpath([base, full]) != base:
            raise RuleError(path, f"{name!r} leaves the config file's directory")
        try:
            size = os.path.getsize(full)
            if size > MAX_FIXTURE_BYTES:
                raise RuleError(
                    path, f"{name!r} is larger than {MAX_FIXTURE_BYTES} bytes"
                )
            with open(full, encoding="utf-8") as f:
                text = f.read()
        except OSError as error:
            raise RuleError(
                path, f"cannot read {name!r}: {error.strerror or error}"
            ) from None
        except UnicodeDecodeError:
            raise RuleError(path, f"{name!r} is not UTF-8 text") from None
        if name.lower().endswith(".json"):
            try:
                parsed = json.loads(text)
            except ValueError as error:
                raise RuleError(path, f"{name!r} is not valid JSON: {error}") from None
            text = json.dumps(parsed, ensure_ascii=False)
        return FileAnswer(name, text)

    def tool_calls(self, value: Any, path: str) -> ToolCallsAnswer:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise RuleError(path, "must not be empty")
        calls = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            if isinstance(item, str):
                calls.append(ToolCallSpec(_function_name(item, where)))
                continue
            spec = _mapping(item, where)
            _known(spec, where, ("name", "arguments"))
            if "name" not in spec:
                raise RuleError(f"{where}.name", "required")
            name = _function_name(spec["name"], f"{where}.name")
            arguments = spec.get("arguments")
            if arguments is not None and not isinstance(arguments, (dict, str)):
                raise RuleError(
                    f"{where}.arguments",
                    f"must be a mapping or a JSON string, got {_kind(arguments)}",
                )
            if isinstance(arguments, str) and "{{" not in arguments:
                try:
                    json.loads(arguments)
                except ValueError:
                    raise RuleError(f"{where}.arguments", "is not valid JSON") from None
            parsed = (
                None
                if arguments is None
                else _json_template(
                    arguments, f"{where}.arguments", self.groups, self.names
                )
            )
            calls.append(ToolCallSpec(name, parsed))
        return ToolCallsAnswer(tuple(calls))

    def error(self, value: Any, path: str) -> ErrorAnswer:
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"status": value}
        spec = _mapping(value, path)
        _known(spec, path, ("status", "type", "code", "message", "param", "headers"))
        status = _int(spec.get("status", 500), f"{path}.status", 400, 599)
        kind, code, message = _error_defaults(status)
        headers: dict[str, str] = {}
        if "headers" in spec:
            for key, item in _mapping(spec["headers"], f"{path}.headers").items():
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    item = f"{item:g}"
                headers[key.lower()] = _string(
                    item, f"{path}.headers.{key}", nonempty=False
                )
        if status == 429 and "retry-after" not in headers:
            headers["retry-after"] = "1"

        def optional(key: str, default: str | None) -> str | None:
            if key not in spec:
                return default
            if spec[key] is None:
                return None
            return _string(spec[key], f"{path}.{key}")

        return ErrorAnswer(
            status=status,
            message=self.template(spec.get("message", message), f"{path}.message"),
            type=optional("type", kind) or kind,
            code=optional("code", code),
            param=optional("param", None),
            headers=MappingProxyType(headers),
        )


def _function_name(value: Any, path: str) -> str:
    name = _string(value, path)
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        raise RuleError(
            path, f"{name!r} is not a function name (letters, digits, _ and -)"
        )
    return name


# --- rules -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rule:
    name: str | None
    match: Conditions
    answer: Answer
    # Expire after this many matches, or this many seconds after being added.
    times: int | None = None
    ttl_s: float | None = None
    # Per-rule delivery: chunking, gap between chunks, time to first chunk.
    chunking: str | None = None
    interval_ms: float | None = None
    ttft_ms: float | None = None
    # A fault the rule's answers get (see config FAULT_KINDS), and how often.
    fault: str | None = None
    fault_probability: float = 1.0
    # The rule as written, for listing.
    source: Mapping[str, Any] = field(default_factory=lambda: NO_HEADERS)

    @property
    def endpoints(self) -> tuple[str, ...]:
        if self.match.endpoints is not None:
            return self.match.endpoints
        if _only_errors(self.answer):
            return ENDPOINTS
        return TEXT_ENDPOINTS


def _only_errors(answer: Answer) -> bool:
    if isinstance(answer, SequenceAnswer):
        return all(isinstance(s, ErrorAnswer) for s in answer.steps)
    return isinstance(answer, ErrorAnswer)


_RULE_KEYS = ("name", "match", "answer", "times", "ttl_s", "stream", "fault")


def parse_rule(raw: Any, path: str, base_dir: str | None = None) -> Rule:
    """One rule; ``base_dir`` is where ``file:`` fixtures live (default: cwd)."""
    spec = _mapping(raw, path)
    _known(spec, path, _RULE_KEYS)
    at = f"{path}.".__add__
    name = None
    if spec.get("name") is not None:
        name = _string(spec["name"], at("name"))
        if not _NAME.match(name):
            raise RuleError(
                at("name"), "use letters, digits and _ . : @ - (at most 100)"
            )
    conditions = parse_conditions(spec.get("match"), at("match"))
    if "answer" not in spec:
        raise RuleError(at("answer"), "required: what the rule answers")
    groups = max((c.groups for c in conditions.regexes()), default=-1)
    names = frozenset().union(*(c.names for c in conditions.regexes()))
    clash = names & set(TEMPLATE_FIELDS)
    if clash:
        raise RuleError(
            at("match"),
            f"regex group name {sorted(clash)[0]!r} is a template field name",
        )
    answer = _Parser(base_dir, groups, names).answer(spec["answer"], at("answer"))
    times = (
        _int(spec["times"], at("times"), 1, 2**31)
        if spec.get("times") is not None
        else None
    )
    ttl_s = (
        _number(spec["ttl_s"], at("ttl_s"), 0.001, 10 * 365 * 86400)
        if spec.get("ttl_s") is not None
        else None
    )
    chunking = interval_ms = ttft_ms = None
    if spec.get("stream") is not None:
        stream = _mapping(spec["stream"], at("stream"))
        _known(stream, at("stream"), ("chunking", "interval_ms", "ttft_ms"))
        if "chunking" in stream:
            chunking = stream["chunking"]
            if chunking not in CHUNKINGS:
                raise RuleError(
                    at("stream.chunking"),
                    f"must be one of {', '.join(CHUNKINGS)}; got {chunking!r}",
                )
        if "interval_ms" in stream:
            interval_ms = _number(
                stream["interval_ms"], at("stream.interval_ms"), 0, 600_000
            )
        if "ttft_ms" in stream:
            ttft_ms = _number(stream["ttft_ms"], at("stream.ttft_ms"), 0, 3_600_000)
    fault, fault_probability = _fault(spec.get("fault"), at("fault"))
    return Rule(
        name=name,
        match=conditions,
        answer=answer,
        times=times,
        ttl_s=ttl_s,
        chunking=chunking,
        interval_ms=interval_ms,
        ttft_ms=ttft_ms,
        fault=fault,
        fault_probability=fault_probability,
        source=MappingProxyType(dict(spec)),
    )


def _fault(raw: Any, path: str) -> tuple[str | None, float]:
    """``fault: cut_reset`` or ``fault: {kind: stall, probability: 0.5}``."""
    if raw is None:
        return None, 1.0
    spec = {"kind": raw} if isinstance(raw, str) else _mapping(raw, path)
    _known(spec, path, ("kind", "probability"))
    kind = spec.get("kind")
    if kind not in FAULT_KINDS:
        where = path if isinstance(raw, str) else f"{path}.kind"
        raise RuleError(where, f"must be one of {', '.join(FAULT_KINDS)}; got {kind!r}")
    probability = 1.0
    if spec.get("probability") is not None:
        probability = _number(spec["probability"], f"{path}.probability", 0, 1)
    return kind, probability


def parse_rules(
    raw: Any, path: str = "rules", base_dir: str | None = None
) -> tuple[Rule, ...]:
    """The config's ``rules:`` list; names must be unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RuleError(path, f"must be a list, got {_kind(raw)}")
    rules = tuple(parse_rule(r, f"{path}[{i}]", base_dir) for i, r in enumerate(raw))
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name is not None:
            if rule.name in seen:
                raise RuleError(
                    f"{path}[{i}].name",
                    f"duplicate name {rule.name!r} (also {path}[{seen[rule.name]}])",
                )
            seen[rule.name] = i
    return rules


# --- the rule book: order and run-time state ------------------------------------


@dataclass
class Entry:
    """A rule in the book, with its state."""

    id: str
    rule: Rule
    origin: str  # "file" or "runtime"
    added: float
    hits: int = 0
    left: int | None = None
    expires: float | None = None

    def view(self, position: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": position,
            "origin": self.origin,
            "hits": self.hits,
            "times_left": self.left,
            "expires_at": self.expires,
            "rule": dict(self.rule.source),
        }


@dataclass(frozen=True)
class Hit:
    """A matched rule: the answer this request gets, and what it captured."""

    rule: str
    answer: Answer
    context: RequestContext
    captures: Captures = NO_CAPTURES
    count: int = 1
    chunking: str | None = None
    interval_ms: float | None = None
    ttft_ms: float | None = None
    fault: str | None = None
    fault_probability: float = 1.0


class RuleBook:
    """Rules in order: those added ``first`` at run time, the file's, those
    added ``last``.  Whatever no rule matches gets the default answer."""

    def __init__(self, rules: Sequence[Rule] = (), now: float = 0.0) -> None:
        self.first: list[Entry] = []
        self.file: list[Entry] = []
        self.last: list[Entry] = []
        self._added = 0
        self.load(rules, now)

    def __bool__(self) -> bool:
        return bool(self.first or self.file or self.last)

    def _entry(self, rule: Rule, entry_id: str, origin: str, now: float) -> Entry:
        return Entry(
            id=entry_id,
            rule=rule,
            origin=origin,
            added=now,
            left=rule.times,
            expires=None if rule.ttl_s is None else now + rule.ttl_s,
        )

    def load(self, rules: Sequence[Rule], now: float) -> None:
        """The file's rules (at start, at reload) with fresh counters; run-time
        rules stay."""
        self.file = [
            self._entry(r, r.name or f"rule-{i}", "file", now)
            for i, r in enumerate(rules)
        ]

    def reset(self, rules: Sequence[Rule], now: float) -> None:
        """Back to the file's rules alone."""
        self.first, self.last = [], []
        self.load(rules, now)

    def entries(self, now: float | None = None) -> list[Entry]:
        if now is not None:
            self._expire(now)
        return [*self.first, *self.file, *self.last]

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries() if e.id == entry_id), None)

    def add(self, rule: Rule, now: float, position: str = "last") -> Entry:
        """A run-time rule; its id is its name, else ``added-N``."""
        if rule.name is not None and self.get(rule.name) is not None:
            raise RuleError(
                "name", f"a rule named {rule.name!r} exists; replace it instead"
            )
        self._added += 1
        entry = self._entry(rule, rule.name or f"added-{self._added}", "runtime", now)
        if position == "first":
            self.first.insert(0, entry)
        else:
            self.last.append(entry)
        return entry

    def replace(self, entry_id: str, rule: Rule, now: float) -> Entry | None:
        """Swap a rule in place (same id and position, fresh counters)."""
        for entries in (self.first, self.file, self.last):
            for i, entry in enumerate(entries):
                if entry.id == entry_id:
                    entries[i] = self._entry(rule, entry_id, entry.origin, now)
                    return entries[i]
        return None

    def delete(self, entry_id: str) -> bool:
        for entries in (self.first, self.file, self.last):
            for i, entry in enumerate(entries):
                if entry.id == entry_id:
                    del entries[i]
                    return True
        return False

    def _expire(self, now: float) -> None:
        for entries in (self.first, self.file, self.last):
            if any(e.expires is not None and now >= e.expires for e in entries):
                entries[:] = [
                    e for e in entries if e.expires is None or now < e.expires
                ]

    def match(self, ctx: RequestContext, now: float) -> Hit | None:
        """The first live rule whose conditions hold; its counters move."""
        for entries in (self.first, self.file, self.last):
            for i, entry in enumerate(entries):
                if entry.expires is not None and now >= entry.expires:
                    continue
                rule = entry.rule
                captures = rule.match.evaluate(ctx, rule.endpoints)
                if captures is None:
                    continue
                entry.hits += 1
                if entry.left is not None:
                    entry.left -= 1
                    if entry.left <= 0:
                        del entries[i]
                answer = rule.answer
                if isinstance(answer, SequenceAnswer):
                    answer = answer.step(entry.hits)
                return Hit(
                    rule=entry.id,
                    answer=answer,
                    context=ctx,
                    captures=captures,
                    count=entry.hits,
                    chunking=rule.chunking,
                    interval_ms=rule.interval_ms,
                    ttft_ms=rule.ttft_ms,
                    fault=rule.fault,
                    fault_probability=rule.fault_probability,
                )
        self._expire(now)
        return None


# --- rendering ---------------------------------------------------------------


class Generators(Protocol):
    """What rendering borrows from the engine (``Engine`` is one)."""

    def reply_text(self, rng: random.Random) -> str: ...
    def arguments(self, function: FunctionDef, rng: random.Random) -> str: ...


@dataclass(frozen=True)
class Reply:
    """A rendered answer: text, or tool calls as (name, JSON arguments)."""

    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()

    @property
    def as_text(self) -> str:
        """The answer where only text fits (legacy completions)."""
        if not self.tool_calls:
            return self.text
        return json.dumps(
            [{"name": n, "arguments": a} for n, a in self.tool_calls],
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class ScriptedError(ApiError):
    """An ``error`` answer: an ApiError that remembers which rule sent it."""

    rule: str = ""


def scripted_error(hit: Hit) -> ScriptedError:
    answer = hit.answer
    assert isinstance(answer, ErrorAnswer)
    lookup = _Lookup(hit.context, hit.captures, hit.count)
    return ScriptedError(
        status=answer.status,
        message=answer.message.render(lookup),
        type=answer.type,
        param=answer.param,
        code=answer.code,
        headers=answer.headers,
        rule=hit.rule,
    )


_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
    " incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis"
    " nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat"
)
LOREM = tuple(_LOREM_TEXT.split(" "))


def lorem(tokens: int, model: str | None = None) -> str:
    """Exactly ``tokens`` tokens of lorem ipsum (by the model's tokenizer), the
    same text every time."""
    words = []
    for i in range(tokens):
        word = LOREM[i % len(LOREM)]
        if i % 9 == 0:
            word = word.capitalize()
        if i % 9 == 8:
            word += "."
        words.append(word)
    text, _cut = tokenizer.for_model(model).truncate(" ".join(words), tokens)
    return text


def render(
    hit: Hit, rng: random.Random, generators: Generators, index: int = 0, n: int = 1
) -> Reply:
    """The answer for choice ``index`` of ``n``; an error answer raises."""
    answer = hit.answer
    ctx = hit.context
    lookup = _Lookup(ctx, hit.captures, hit.count)
    if isinstance(answer, TextAnswer):
        return Reply(answer.template.render(lookup))
    if isinstance(answer, ChoicesAnswer):
        items = answer.items
        if answer.pick == "round_robin":
            chosen = items[((hit.count - 1) * n + index) % len(items)]
        elif answer.pick == "seeded":
            key = f"{answer.seed}\0{ctx.seed}\0{ctx.last_user_text}\0{index}"
            chosen = random.Random(key).choice(items)
        else:
            chosen = rng.choice(items)
        return Reply(chosen.render(lookup))
    if isinstance(answer, EchoAnswer):
        return Reply(ctx.last_user_text)
    if isinstance(answer, LoremAnswer):
        return Reply(lorem(answer.tokens, ctx.model))
    if isinstance(answer, FileAnswer):
        return Reply(answer.text)
    if isinstance(answer, ToolCallsAnswer):
        calls = []
        for call in answer.calls:
            if call.arguments is None:
                arguments = generators.arguments(ctx.function(call.name), rng)
            else:
                given = _render_json(call.arguments, lookup)
                arguments = (
                    given
                    if isinstance(given, str)
                    else json.dumps(given, ensure_ascii=False, separators=(",", ":"))
                )
            calls.append((call.name, arguments))
        return Reply(tool_calls=tuple(calls))
    if isinstance(answer, JsonAnswer):
        if answer.from_request or answer.schema is not None:
            schema = answer.schema if answer.schema is not None else ctx.response_schema
            if schema is None:
                value: Any = {"message": generators.reply_text(rng)}
            else:
                try:
                    value = schema_gen.generate(schema, rng, name=ctx.response_name)
                except schema_gen.SchemaError as error:
                    raise ApiError(
                        400,
                        f"Invalid schema for response_format: {error}",
                        param="response_format",
                    ) from None
        else:
            value = _render_json(answer.value, lookup)
        return Reply(json.dumps(value, ensure_ascii=False))
    if isinstance(answer, ErrorAnswer):
        raise scripted_error(hit)
    raise AssertionError(f"unrendered answer {answer!r}")  # sequences resolve in match
