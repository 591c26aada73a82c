"""Conditions: a rule's ``match:`` -- what it tests, and what its regexes capture.

Parsed once from the rule's mapping (errors name the key path) and evaluated
against a RequestContext per request.  Knows nothing of answers or the book.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mockai_tw import checks
from mockai_tw.checks import Problem
from mockai_tw.engine.rules.context import (
    ENDPOINTS,
    NO_HEADERS,
    RequestContext,
    as_text,
)
from mockai_tw.engine.rules.errors import RuleError, worded

_ENDPOINT_ALIASES = {
    "chat.completions": "chat",
    "chat/completions": "chat",
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "generateContent": "gemini",
    "generate_content": "gemini",
    "/v1/embeddings": "embeddings",
    "/v1/moderations": "moderations",
}
_TEXT_OPS = ("equals", "contains", "regex", "glob")


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


@worded
def text_condition(raw: Any, path: str, default_op: str) -> TextCondition:
    """A bare string means ``default_op``; a mapping names its operator."""
    if isinstance(raw, str):
        op, value, ignore_case = default_op, raw, False
    else:
        spec = checks.mapping(raw, path, string_keys=True)
        checks.known_keys(spec, path, (*_TEXT_OPS, "ignore_case"))
        ops = [k for k in _TEXT_OPS if k in spec]
        if len(ops) != 1:
            raise RuleError(path, f"give exactly one of {', '.join(_TEXT_OPS)}")
        op = ops[0]
        value = checks.string(spec[op], f"{path}.{op}", nonempty=op != "equals")
        ignore_case = checks.boolean(
            spec.get("ignore_case", False), f"{path}.ignore_case"
        )
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
    # True: batch lines only; False: live requests only.
    batch: bool | None = None
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
            yield condition, None if value is None else as_text(value)

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
        if self.batch is not None and ctx.batch != self.batch:
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


def _strings(value: Any, path: str) -> tuple[str, ...]:
    """A string, or a non-empty list of them."""
    if isinstance(value, str):
        return (checks.string(value, path, nonempty=True),)
    if not isinstance(value, list) or not value:
        raise Problem(path, "a string or a non-empty list", value)
    return tuple(
        checks.string(v, f"{path}[{i}]", nonempty=True) for i, v in enumerate(value)
    )


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
    spec = checks.mapping(raw, path, string_keys=True)
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
    "batch",
    "headers",
    "user",
    "metadata",
)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@worded
def parse_conditions(raw: Any, path: str) -> Conditions:
    if raw is None:
        return Conditions()
    spec = checks.mapping(raw, path, string_keys=True)
    checks.known_keys(spec, path, _MATCH_KEYS)
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
        stream=checks.boolean(spec["stream"], at("stream"))
        if "stream" in spec
        else None,
        batch=checks.boolean(spec["batch"], at("batch")) if "batch" in spec else None,
        headers=_keyed(spec["headers"], at("headers"), True)
        if "headers" in spec
        else (),
        user=text("user", "equals"),
        metadata=_keyed(spec["metadata"], at("metadata"), False)
        if "metadata" in spec
        else (),
    )
