"""Templates: answer text with ``{{field}}`` placeholders, checked when parsed.

A field is a regex capture or a request field; ``Lookup`` resolves them for one
request.  Also the JSON values whose strings are templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.checks import Problem
from mockai_tw.engine.rules.conditions import Captures
from mockai_tw.engine.rules.context import RequestContext, as_text
from mockai_tw.engine.rules.errors import RuleError

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


class Lookup:
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
            return "" if value is None else as_text(value)
        return ""


def json_template(value: Any, path: str, groups: int, names: frozenset[str]) -> Any:
    """A JSON value whose strings are templates."""
    if isinstance(value, str):
        return parse_template(value, path, groups, names)
    if isinstance(value, list):
        return [
            json_template(v, f"{path}[{i}]", groups, names) for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            checks.string_key(key, path)
            out[key] = json_template(item, f"{path}.{key}", groups, names)
        return out
    if isinstance(value, float):
        checks.number(value, path)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise Problem(path, "JSON", value)


def render_json(value: Any, lookup: Callable[[str], str]) -> Any:
    if isinstance(value, Template):
        return value.render(lookup)
    if isinstance(value, list):
        return [render_json(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, lookup) for k, v in value.items()}
    return value
