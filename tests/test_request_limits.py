"""Every integer a request model reads is range-checked: a 400 naming the param.

Through the web layer, on a live listener: each integer field of each endpoint
gets ``1e300``, ``2**64``, ``-2**64`` and ``2**31`` (and ``2**63`` for the int64
seeds), and the server answers a good request after each.  ``/v1/moderations``
reads no integer; it is here for a number where its ``input`` belongs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from mockai_tw.errors import ApiError
from mockai_tw.request.common import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    Source,
    check_integer,
)
from tests.openapi import validate
from tests.support import Live, start

CHAT = "/v1/chat/completions"
LEGACY = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"
AZURE = "/openai/deployments/{}?api-version=2024-10-21"
AZURE_CHAT = AZURE.format("my-gpt4o/chat/completions")
AZURE_LEGACY = AZURE.format("my-instruct/completions")
AZURE_EMBEDDINGS = AZURE.format("text-embedding-3-small/embeddings")

MESSAGES = [{"role": "user", "content": "hi"}]
GOOD: dict[str, dict[str, Any]] = {
    CHAT: {"model": "gpt-4o", "messages": MESSAGES, "logprobs": True},
    LEGACY: {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
    RESPONSES: {"model": "gpt-4o", "input": "hi"},
    EMBEDDINGS: {"model": "text-embedding-3-small", "input": "hi"},
    MODERATIONS: {"input": "hi"},
    AZURE_CHAT: {"messages": MESSAGES},
    AZURE_LEGACY: {"prompt": "hi"},
    AZURE_EMBEDDINGS: {"input": "hi"},
}

HUGE = 2**64
TOO_BIG = "integer_above_max_value"
TOO_SMALL = "integer_below_min_value"
WRONG_TYPE = "invalid_type"


@dataclass(frozen=True)
class Field:
    """One integer field: where it goes in a body and what bounds it has."""

    path: str
    at: tuple[str | int, ...]
    low: int
    high: int
    # The ``param`` of the error, when not the field's own name.
    param: str | None = None
    # What the body holds around the field (a token array's other ids).
    around: dict[str, Any] = field(default_factory=dict)
    # A different ``code`` for some values (embeddings words negative ids itself).
    codes: dict[int, str | None] = field(default_factory=dict)
    # Values it takes, when not its bounds.
    takes: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        out = str(self.at[0])
        for step in self.at[1:]:
            out += f"[{step}]" if isinstance(step, int) else f".{step}"
        return out

    def body(self, value: Any) -> dict[str, Any]:
        body = copy.deepcopy({**GOOD[self.path], **self.around})
        node: Any = body
        for step in self.at[:-1]:
            node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
        node[self.at[-1]] = value
        return body

    @property
    def accepted(self) -> tuple[int, ...]:
        return self.takes or (self.low, self.high)


def count(path: str, *at: str | int, low: int, high: int = INT32_MAX) -> Field:
    return Field(path, at, low, high)


# ``dimensions``: 0 is refused by the endpoint's own check (worded like its
# "more than the model has"), so its range check is the int32 one.
def dimensions(path: str) -> Field:
    return Field(path, ("dimensions",), -(2**31), INT32_MAX, takes=(1, 256, 1536))


def seed(path: str) -> Field:
    return Field(path, ("seed",), INT64_MIN, INT64_MAX)


# The bounds: OpenAI's reference where it gives them, else int32 (int64 seeds).
FIELDS: list[Field] = [
    count(CHAT, "n", low=1, high=128),
    count(CHAT, "max_tokens", low=1),
    count(CHAT, "max_completion_tokens", low=1),
    count(CHAT, "top_logprobs", low=0, high=20),
    seed(CHAT),
    count(CHAT, "logit_bias", "50256", low=-100, high=100),
    count(LEGACY, "n", low=1, high=128),
    # best_of must be >= n (1 here): 0 is refused by that check.
    Field(LEGACY, ("best_of",), 0, 20, takes=(1, 20)),
    count(LEGACY, "max_tokens", low=0),
    count(LEGACY, "logprobs", low=0, high=5),
    seed(LEGACY),
    count(LEGACY, "logit_bias", "50256", low=-100, high=100),
    Field(LEGACY, ("prompt", 1), 0, INT32_MAX, around={"prompt": [1, 2]}),
    Field(LEGACY, ("prompt", 1, 0), 0, INT32_MAX, around={"prompt": [[1], [2]]}),
    count(RESPONSES, "max_output_tokens", low=16),
    count(RESPONSES, "max_tool_calls", low=1),
    count(RESPONSES, "top_logprobs", low=0, high=20),
    seed(RESPONSES),
    dimensions(EMBEDDINGS),
    Field(
        EMBEDDINGS,
        ("input", 1),
        0,
        INT32_MAX,
        param="input",
        around={"input": [1, 2]},
        codes={-HUGE: None},
    ),
    Field(
        EMBEDDINGS,
        ("input", 1, 0),
        0,
        INT32_MAX,
        param="input",
        around={"input": [[1], [2]]},
        codes={-HUGE: None},
    ),
    # The Azure routes read the same models.
    count(AZURE_CHAT, "max_tokens", low=1),
    seed(AZURE_LEGACY),
    dimensions(AZURE_EMBEDDINGS),
]


def expected(f: Field, value: int | float) -> tuple[int, str | None, Sequence[str]]:
    """(status, code, words in the message) for ``value`` in field ``f``."""
    if isinstance(value, float):
        return 400, WRONG_TYPE, ["expected an integer, but got a decimal number"]
    if value in f.codes:
        return 400, f.codes[value], [f.name]
    if value > f.high:
        bound = f"Expected a value <= {f.high}, but got {value} instead."
        return 400, TOO_BIG, [f"Invalid '{f.name}'", bound]
    if value < f.low:
        bound = f"Expected a value >= {f.low}, but got {value} instead."
        return 400, TOO_SMALL, [f"Invalid '{f.name}'", bound]
    return 200, None, []


def values(f: Field) -> list[int | float]:
    out: list[int | float] = [1e300, HUGE, -HUGE, 2**31]
    if f.high == INT64_MAX:
        out.append(2**63)
    return out


class LimitTests(TestCase):
    async def send(self, live: Live, f: Field, value: int | float) -> None:
        status, code, words = expected(f, value)
        raw = json.dumps(f.body(value)).encode()
        response, payload = await live.json("POST", f.path, raw=raw)
        label = (f.path, f.name, value, payload)
        self.assertEqual(response.code, status, label)
        if status == 200:
            return
        validate(payload, "ErrorResponse")
        error = payload["error"]
        self.assertEqual(error["type"], "invalid_request_error", label)
        self.assertEqual(error["param"], f.param or f.name, label)
        self.assertEqual(error["code"], code, label)
        for word in words:
            self.assertIn(word, error["message"], label)
        # ...and the server still serves.
        ok, answer = await live.json("POST", f.path, GOOD[f.path])
        self.assertEqual(ok.code, 200, answer)

    async def test_every_integer_field(self) -> None:
        live = await start(self)
        for f in FIELDS:
            for value in values(f):
                await self.send(live, f, value)

    async def test_in_range_values_are_taken(self) -> None:
        live = await start(self)
        for f in FIELDS:
            for value in f.accepted:
                await self.send(live, f, value)

    async def test_moderations_input_is_not_a_number(self) -> None:
        live = await start(self)
        for value in [1e300, HUGE, -HUGE, 2**31]:
            response, payload = await live.json(
                "POST", MODERATIONS, raw=json.dumps({"input": value}).encode()
            )
            self.assertEqual(response.code, 400, payload)
            self.assertEqual(
                (payload["error"]["param"], payload["error"]["code"]),
                ("input", WRONG_TYPE),
            )
        ok, _ = await live.json("POST", MODERATIONS, GOOD[MODERATIONS])
        self.assertEqual(ok.code, 200)

    async def test_input_items_limit(self) -> None:
        live = await start(self)
        response, body = await live.json("POST", RESPONSES, GOOD[RESPONSES])
        self.assertEqual(response.code, 200, body)
        path = f"{RESPONSES}/{body['id']}/input_items?limit="
        cases: list[tuple[str, str]] = [
            (str(HUGE), TOO_BIG),
            (str(-HUGE), TOO_SMALL),
            (str(2**31), TOO_BIG),
            ("1e300", WRONG_TYPE),
            ("9" * 5000, WRONG_TYPE),
        ]
        for text, code in cases:
            response, payload = await live.json("GET", path + text)
            self.assertEqual(response.code, 400, payload)
            validate(payload, "ErrorResponse")
            self.assertEqual(
                (payload["error"]["param"], payload["error"]["code"]),
                ("limit", code),
            )
        response, page = await live.json("GET", path + "100")
        self.assertEqual(response.code, 200, page)


class CheckIntegerTests(SynchronousTestCase):
    """The helper itself, on what orjson hands it."""

    def error(self, value: Any, data: bytes = b"{}", **kw: Any) -> ApiError:
        source = Source(data)
        return self.assertRaises(
            ApiError,
            check_integer,
            value,
            "x",
            literal=lambda: source.integer_literal(("x",)),
            **kw,
        )

    def test_whole_floats_in_range(self) -> None:
        self.assertEqual(check_integer(16.0, "x"), 16)
        self.assertIs(type(check_integer(16.0, "x")), int)
        self.assertEqual(self.error(1.5).code, WRONG_TYPE)
        self.assertEqual(self.error(True).code, WRONG_TYPE)

    def test_literal_beyond_orjson(self) -> None:
        # orjson reads both as the same float; only the body tells them apart.
        as_float = float(HUGE)
        error = self.error(as_float, b'{"x": 18446744073709551616}')
        self.assertEqual(error.code, TOO_BIG)
        self.assertIn("but got 18446744073709551616 instead", error.message)
        self.assertEqual(
            self.error(as_float, b'{"x": 1.8446744073709552e19}').code, WRONG_TYPE
        )
        # -2**63 - 1 rounds to -2**63, an int64; the literal says it is not.
        error = self.error(
            float(INT64_MIN),
            b'{"x": -9223372036854775809}',
            low=INT64_MIN,
            high=INT64_MAX,
        )
        self.assertEqual(error.code, TOO_SMALL)

    def test_long_literal(self) -> None:
        digits = "9" * 300
        error = self.error(float(digits), b'{"x": ' + digits.encode() + b"}")
        self.assertEqual(error.code, TOO_BIG)
        self.assertIn(digits, error.message)

    def test_body_the_stdlib_cannot_read(self) -> None:
        self.assertEqual(self.error(float(HUGE), b"\xff").code, WRONG_TYPE)
