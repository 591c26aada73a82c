"""Answers: the frozen values of what a rule answers, and their parser.

One class per answer kind (text, choices, echo, lorem, file, tool calls, JSON,
error, sequence); ``AnswerParser`` reads fixtures once, at load, never per request.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mockai_tw import checks
from mockai_tw.checks import Problem
from mockai_tw.engine import schema_gen
from mockai_tw.engine.rules.context import NO_HEADERS
from mockai_tw.engine.rules.errors import RuleError
from mockai_tw.engine.rules.templates import Template, json_template, parse_template

PICKS = ("random", "round_robin", "seeded")
THEN = ("repeat_last", "cycle")
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
# Fixtures are read whole at load; a bound keeps a typo from reading a disk image.
MAX_FIXTURE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class Spoken:
    """What any answer a model speaks may add: the reasoning ("thinking")
    sent before it where the request asked for thinking (None: the engine's
    default reasoning)."""

    thinking: Template | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class TextAnswer(Spoken):
    template: Template
    kind = "text"


@dataclass(frozen=True)
class ChoicesAnswer(Spoken):
    items: tuple[Template, ...]
    pick: str = "random"
    seed: int = 0
    kind = "choices"


@dataclass(frozen=True)
class EchoAnswer(Spoken):
    kind = "echo"


@dataclass(frozen=True)
class LoremAnswer(Spoken):
    tokens: int
    kind = "lorem"


@dataclass(frozen=True)
class FileAnswer(Spoken):
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
class ToolCallsAnswer(Spoken):
    calls: tuple[ToolCallSpec, ...]
    kind = "tool_calls"


@dataclass(frozen=True, eq=False)
class JsonAnswer(Spoken):
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


_ERROR_KEYS = ("status", "type", "code", "message", "param", "headers")


def _error_defaults(status: int) -> tuple[str, str | None, str]:
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    if status >= 500:
        return ("server_error", None, "The server had an error.")
    return ("invalid_request_error", None, "The request was refused.")


class AnswerParser:
    """Parses one rule's answer, knowing what its match can capture."""

    def __init__(
        self, base_dir: str | None, groups: int, names: frozenset[str]
    ) -> None:
        self.base_dir = base_dir
        self.groups = groups
        self.names = names

    def template(self, value: Any, path: str) -> Template:
        return parse_template(checks.string(value, path), path, self.groups, self.names)

    def answer(self, raw: Any, path: str, nested: bool = False) -> Answer:
        answer = self._answer(raw, path, nested)
        if not isinstance(raw, Mapping) or "thinking" not in raw:
            return answer
        at = f"{path}.thinking"
        if not isinstance(answer, Spoken):
            raise RuleError(at, f"{answer.kind} answers have no thinking")
        thinking = self.template(raw["thinking"], at)
        return dataclasses.replace(answer, thinking=thinking)

    def _answer(self, raw: Any, path: str, nested: bool) -> Answer:
        if isinstance(raw, str):
            return TextAnswer(self.template(raw, path))
        spec = checks.mapping(raw, path, string_keys=True)
        kinds = [k for k in ANSWER_KINDS if k in spec]
        if not kinds:
            unknown = [k for k in spec if k not in ("pick", "seed", "then", "thinking")]
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
        checks.known_keys(spec, path, (kind, *extra, "thinking"))
        at = f"{path}.{kind}"
        value = spec[kind]
        if kind == "text":
            return TextAnswer(self.template(value, at))
        if kind == "choices":
            if not isinstance(value, list) or not value:
                raise Problem(at, "a non-empty list", value)
            pick = checks.one_of(spec.get("pick", "random"), f"{path}.pick", PICKS)
            seed = checks.integer(
                spec.get("seed", 0), f"{path}.seed", ge=-(2**63), le=2**63 - 1
            )
            items = tuple(self.template(v, f"{at}[{i}]") for i, v in enumerate(value))
            return ChoicesAnswer(items, pick, seed)
        if kind == "echo":
            if value is not True:
                raise RuleError(at, "must be true")
            return EchoAnswer()
        if kind == "lorem":
            return LoremAnswer(checks.integer(value, at, ge=1, le=100_000))
        if kind == "file":
            return self.file(value, at)
        if kind == "tool_calls":
            return self.tool_calls(value, at)
        if kind == "json":
            return JsonAnswer(value=json_template(value, at, self.groups, self.names))
        if kind == "json_schema":
            if value == "request":
                return JsonAnswer(from_request=True)
            schema = checks.mapping(value, at, string_keys=True)
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
            raise Problem(at, "a non-empty list of answers", value)
        then = checks.one_of(spec.get("then", "repeat_last"), f"{path}.then", THEN)
        steps = tuple(
            self.answer(v, f"{at}[{i}]", nested=True) for i, v in enumerate(value)
        )
        return SequenceAnswer(steps, then)

    def file(self, value: Any, path: str) -> FileAnswer:
        name = checks.string(value, path, nonempty=True)
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
            spec = checks.mapping(item, where, string_keys=True)
            checks.known_keys(spec, where, ("name", "arguments"))
            if "name" not in spec:
                raise RuleError(f"{where}.name", "required")
            name = _function_name(spec["name"], f"{where}.name")
            arguments = spec.get("arguments")
            if arguments is not None and not isinstance(arguments, (dict, str)):
                raise Problem(
                    f"{where}.arguments", "a mapping or a JSON string", arguments
                )
            if isinstance(arguments, str) and "{{" not in arguments:
                try:
                    json.loads(arguments)
                except ValueError:
                    raise RuleError(f"{where}.arguments", "is not valid JSON") from None
            parsed = (
                None
                if arguments is None
                else json_template(
                    arguments, f"{where}.arguments", self.groups, self.names
                )
            )
            calls.append(ToolCallSpec(name, parsed))
        return ToolCallsAnswer(tuple(calls))

    def error(self, value: Any, path: str) -> ErrorAnswer:
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"status": value}
        spec = checks.mapping(value, path, string_keys=True)
        checks.known_keys(spec, path, _ERROR_KEYS)
        status = checks.integer(
            spec.get("status", 500), f"{path}.status", ge=400, le=599
        )
        kind, code, message = _error_defaults(status)
        headers: dict[str, str] = {}
        if "headers" in spec:
            given = checks.mapping(spec["headers"], f"{path}.headers", string_keys=True)
            for key, item in given.items():
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    item = f"{item:g}"
                headers[key.lower()] = checks.string(item, f"{path}.headers.{key}")
        if status == 429 and "retry-after" not in headers:
            headers["retry-after"] = "1"

        def optional(key: str, default: str | None) -> str | None:
            if key not in spec:
                return default
            if spec[key] is None:
                return None
            return checks.string(spec[key], f"{path}.{key}", nonempty=True)

        return ErrorAnswer(
            status=status,
            message=self.template(spec.get("message", message), f"{path}.message"),
            type=optional("type", kind) or kind,
            code=optional("code", code),
            param=optional("param", None),
            headers=MappingProxyType(headers),
        )


def _function_name(value: Any, path: str) -> str:
    name = checks.string(value, path, nonempty=True)
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        raise RuleError(
            path, f"{name!r} is not a function name (letters, digits, _ and -)"
        )
    return name
