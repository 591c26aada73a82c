"""Rendering: a matched rule's answer as the text or tool calls of one choice.

What cannot be scripted (generated replies, tool arguments) is borrowed from
the engine through ``Generators``; an ``error`` answer raises its ApiError.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

from mockai_tw.engine import schema_gen, tokenizer
from mockai_tw.engine.rules.answers import (
    ChoicesAnswer,
    EchoAnswer,
    ErrorAnswer,
    FileAnswer,
    JsonAnswer,
    LoremAnswer,
    TextAnswer,
    ToolCallsAnswer,
)
from mockai_tw.engine.rules.book import Hit
from mockai_tw.engine.rules.templates import Lookup, render_json
from mockai_tw.errors import ApiError
from mockai_tw.request.chat import FunctionDef


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
    lookup = Lookup(hit.context, hit.captures, hit.count)
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
    lookup = Lookup(ctx, hit.captures, hit.count)
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
                given = render_json(call.arguments, lookup)
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
            value = render_json(answer.value, lookup)
        return Reply(json.dumps(value, ensure_ascii=False))
    if isinstance(answer, ErrorAnswer):
        raise scripted_error(hit)
    raise AssertionError(f"unrendered answer {answer!r}")  # sequences resolve in match
