"""The plan codec: real engine plans round-trip to the same value and bytes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mockai_tw.config_load import parse_config
from mockai_tw.engine import codec
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.codec import CodecError, dump, load
from mockai_tw.engine.plan import (
    CallOutput,
    MessageOutput,
    Pacing,
    ResponsePlan,
    Usage,
)
from mockai_tw.engine.responses import ResponseStore, plan_response, prepare_response
from mockai_tw.errors import ApiError
from mockai_tw.request.responses import ListParams, parse_responses_request
from mockai_tw.wire.responses import input_items_body, response_body, response_stream
from tests.support import TOKEN
from tests.test_responses import TOOLS as RESPONSES_TOOLS
from tests.test_responses import WEATHER

# The Responses tests' weather tool, and a second one.
TOOLS: list[dict[str, Any]] = [
    *RESPONSES_TOOLS,
    {
        "type": "function",
        "name": "get_forecast",
        "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}},
    },
]
RULES: list[dict[str, Any]] = [
    {
        "name": "greet",
        "match": {"content": {"regex": r"order (?P<id>\d+)"}},
        "answer": "Order {{id}} is on its way ({{model}}).",
    },
    {
        "name": "lookup",
        "match": {"content": "look it up"},
        "answer": {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "x"}},
                {"name": "get_forecast"},
            ]
        },
    },
    {"name": "long", "match": {"content": "ramble"}, "answer": {"lorem": 200}},
]


def engine(**config: Any) -> Engine:
    return Engine(parse_config({"access_token": TOKEN, **config}, environ={}))


def plan(
    body: dict[str, Any],
    on: Engine | None = None,
    store: ResponseStore | None = None,
) -> ResponsePlan:
    request = parse_responses_request(json.dumps({"model": "gpt-4o", **body}).encode())
    return plan_response(
        on or engine(), store or ResponseStore(10), request, 1_700_000_000.0
    )


def rendered(p: ResponsePlan) -> list[Any]:
    """Every way the wire shows a stored plan."""
    return [
        response_body(p),
        list(response_stream(p)),
        input_items_body(p, ListParams()),
        input_items_body(p, ListParams(limit=1, order="asc")),
    ]


class RoundTripTests(SynchronousTestCase):
    def round_trip(self, p: ResponsePlan) -> ResponsePlan:
        data = dump(p)
        self.assertIsInstance(data, bytes)
        self.assertNotIn(b"\n", data)
        self.assertEqual(orjson.loads(data)["v"], 1)
        back = load(data)
        self.assertEqual(back, p)
        self.assertIsNot(back, p)
        self.assertEqual(rendered(back), rendered(p))
        # Written again, the same bytes.
        self.assertEqual(dump(back), data)
        return back

    def test_plain_text(self) -> None:
        p = plan({"input": "Hello there"})
        self.assertIsInstance(p.output[0], MessageOutput)
        self.round_trip(p)

    def test_every_request_field(self) -> None:
        p = plan(
            {
                "instructions": "Be brief.",
                "input": [
                    {"role": "developer", "content": "Use metric."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is "},
                            {"type": "input_text", "text": "this?"},
                            {"type": "input_image", "image_url": "https://x/y.png"},
                        ],
                    },
                    {
                        "type": "message",
                        "id": "msg_given",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "A picture."}],
                    },
                    {"role": "user", "content": "Again, ünïcödé ✓ 🚀"},
                ],
                "metadata": {"team": "qa", "run": "7"},
                "temperature": 1,
                "top_p": 0.5,
                "seed": -(2**63),
                "user": "u-1",
                "max_tool_calls": 3,
                "parallel_tool_calls": False,
                "truncation": "auto",
                "reasoning": {"effort": "low", "summary": "auto"},
                "service_tier": "flex",
                "safety_identifier": "s",
                "prompt_cache_key": "k",
                "background": False,
                "text": {"verbosity": "low"},
            }
        )
        self.assertEqual(p.request.metadata, {"team": "qa", "run": "7"})
        self.assertEqual(len(p.input_items), 4)
        self.round_trip(p)

    def test_function_calls(self) -> None:
        for stream in (False, True):
            p = plan(
                {
                    "input": "Weather in Oslo?",
                    "tools": TOOLS,
                    "tool_choice": "required",
                    "stream": stream,
                }
            )
            self.assertIsInstance(p.output[0], CallOutput)
            self.round_trip(p)

    def test_parallel_calls(self) -> None:
        e = engine(seed=1)
        body = {"input": "hi", "tools": TOOLS, "tool_choice": "required"}
        plans = [plan({**body, "seed": n}, e) for n in range(40)]
        several = next(p for p in plans if len(p.output) > 1)
        self.round_trip(several)

    def test_forced_tool(self) -> None:
        p = plan(
            {
                "input": "x",
                "tools": TOOLS,
                "tool_choice": {"type": "function", "name": "get_forecast"},
            }
        )
        self.assertEqual(p.request.forced_tool, "get_forecast")
        self.round_trip(p)

    def test_replayed_calls_and_outputs(self) -> None:
        p = plan(
            {
                "tools": TOOLS,
                "input": [
                    {"role": "user", "content": "Weather in Oslo?"},
                    {
                        "type": "function_call",
                        "call_id": "call_1",
                        "name": "get_weather",
                        "arguments": '{"city":"Oslo","unit":"celsius"}',
                    },
                    {
                        "type": "function_call_output",
                        "call_id": "call_1",
                        "output": [{"type": "input_text", "text": "7 C"}],
                    },
                ],
            }
        )
        self.assertEqual(
            [i.item.type for i in p.input_items],
            ["message", "function_call", "function_call_output"],
        )
        self.round_trip(p)

    def test_scenario_rules(self) -> None:
        e = engine(rules=RULES)
        text = plan({"input": "Where is order 7?"}, e)
        self.assertEqual(text.rule, "greet")
        self.round_trip(text)
        calls = plan({"input": "look it up", "tools": TOOLS, "stream": True}, e)
        self.assertEqual(calls.rule, "lookup")
        self.assertEqual(len(calls.output), 2)
        self.round_trip(calls)

    def test_incomplete(self) -> None:
        e = engine(rules=RULES)
        for stream in (False, True):
            p = plan({"input": "ramble", "max_output_tokens": 16, "stream": stream}, e)
            self.assertEqual(p.status, "incomplete")
            self.assertEqual(p.incomplete_reason, "max_output_tokens")
            self.round_trip(p)

    def test_structured_output(self) -> None:
        p = plan(
            {
                "input": "Weather?",
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "weather",
                        "description": "A city's weather",
                        "schema": WEATHER,
                        "strict": True,
                    }
                },
            }
        )
        self.assertEqual(p.request.text_format.type, "json_schema")
        self.assertEqual(set(json.loads(p.output[0].text)), {"city", "unit"})  # type: ignore[union-attr]
        self.round_trip(p)
        self.round_trip(
            plan({"input": "x", "text": {"format": {"type": "json_object"}}})
        )

    def test_logprobs(self) -> None:
        p = plan(
            {
                "input": "hi",
                "include": ["message.output_text.logprobs"],
                "top_logprobs": 3,
                "stream": True,
            }
        )
        message = p.output[0]
        assert isinstance(message, MessageOutput) and message.logprobs
        self.assertEqual(len(message.logprobs[0].top), 3)
        self.round_trip(p)

    def test_streaming_pacing(self) -> None:
        fixed = plan(
            {"input": "hi", "stream": True}, engine(stream={"interval_ms": 25})
        )
        self.assertEqual(fixed.pacing.interval_s, 0.025)
        self.round_trip(fixed)
        drawn = engine(
            timing={
                "seed": 3,
                "ttft": {"dist": "uniform", "min_ms": 10, "max_ms": 90},
                "itl": {"dist": "lognormal", "median_ms": 20, "p99_ms": 80},
                "non_stream": True,
            }
        )
        streamed = plan({"input": "hi", "stream": True}, drawn)
        self.assertTrue(streamed.pacing.offsets)
        self.round_trip(streamed)
        delayed = plan({"input": "hi"}, drawn)
        self.assertGreater(delayed.delay_s, 0)
        self.round_trip(delayed)

    def test_store_false(self) -> None:
        p = plan({"input": "hi", "store": False})
        self.assertFalse(p.request.store)
        back = self.round_trip(p)
        store = ResponseStore(2)
        store.keep(back)
        self.assertIsNone(store.get(p.id))

    def test_previous_response_chain(self) -> None:
        e, store = engine(), ResponseStore(10)
        # A second store holding only what came back through the codec: a
        # chain continued from it sees the same conversation.
        decoded = ResponseStore(10)

        def turn(body: dict[str, Any]) -> ResponsePlan:
            data = json.dumps({"model": "gpt-4o", "tools": TOOLS, **body})
            request = parse_responses_request(data.encode())
            self.assertEqual(
                prepare_response(decoded, request).conversation,
                prepare_response(store, request).conversation,
            )
            p = plan_response(e, store, request, 0.0)
            store.keep(p)
            decoded.keep(self.round_trip(p))
            return p

        first = turn({"input": "Weather in Oslo?", "tool_choice": "required"})
        call = first.output[0]
        assert isinstance(call, CallOutput)
        output = {"type": "function_call_output", "call_id": call.call.id}
        second = turn(
            {"input": [{**output, "output": "7 C"}], "previous_response_id": first.id}
        )
        third = turn(
            {
                "input": "And tomorrow?",
                "tool_choice": "none",
                "previous_response_id": second.id,
            }
        )
        self.assertEqual([len(p.context) for p in (first, second, third)], [2, 4, 6])
        self.assertEqual(third.context[:4], second.context)
        self.assertEqual(decoded.get(third.id), third)


class MalformedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.plan = plan({"input": "hi", "tools": TOOLS, "tool_choice": "required"})
        self.doc = orjson.loads(dump(self.plan))

    def refused(self, data: Any, *words: str) -> str:
        with self.assertRaises(ValueError) as caught:
            load(data)
        self.assertIsInstance(caught.exception, CodecError)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertLess(len(message), 200, message)
        for word in words:
            self.assertIn(word, message)
        return message

    def edited(self, change: Any) -> bytes:
        doc = orjson.loads(dump(self.plan))
        change(doc["ResponsePlan"])
        return orjson.dumps(doc)

    def test_not_json(self) -> None:
        for data in (b"", b"{", b"\xff\xfe", b"[1, 2]", b"null", b'"x"'):
            self.refused(data)
        self.refused(None)
        self.refused(12)

    def test_version(self) -> None:
        plan_body = self.doc["ResponsePlan"]
        for version in (2, 0, "1", 1.0, True, None, [1]):
            data = orjson.dumps({"v": version, "ResponsePlan": plan_body})
            self.refused(data, "version")
        self.refused(orjson.dumps({"ResponsePlan": plan_body}), "version")
        self.refused(orjson.dumps({"v": 1}), "'ResponsePlan'")
        self.refused(orjson.dumps({"v": 1, "ChatPlan": plan_body}), "'ResponsePlan'")
        self.refused(orjson.dumps({**self.doc, "extra": 1}), "'ResponsePlan'")

    def test_unknown_class_tag(self) -> None:
        def tag(name: Any) -> Any:
            return lambda p: p["output"][0].update({"$": name})

        message = self.refused(self.edited(tag("os.system")), ".output[0]")
        self.assertIn("'os.system' is not one of MessageOutput | CallOutput", message)
        # An allowed class, but not one an output item can be.
        self.refused(self.edited(tag("Usage")), "'Usage' is not one of")
        self.refused(self.edited(tag("ResponsePlan")), "is not one of")
        self.refused(self.edited(tag(None)), "is not one of")
        self.refused(self.edited(tag(["CallOutput"])), "is not one of")
        self.refused(self.edited(lambda p: p["output"][0].pop("$")), "is not one of")
        # A tag where no union is, is an unknown field.
        self.refused(
            self.edited(lambda p: p["usage"].update({"$": "Usage"})),
            ".usage: unknown field '$' of Usage",
        )

    def test_missing_field(self) -> None:
        self.refused(
            self.edited(lambda p: p.pop("usage")),
            "missing field 'usage' of ResponsePlan",
        )
        self.refused(
            self.edited(lambda p: p["output"][0]["call"].pop("arguments")),
            "ResponsePlan.output[0].call: missing field 'arguments' of ToolCallPlan",
        )

    def test_wrong_type(self) -> None:
        cases = [
            (lambda p: p.update(created_at="0"), ".created_at: expected an integer"),
            (lambda p: p.update(created_at=1.5), ".created_at: expected an integer"),
            (lambda p: p.update(created_at=True), ".created_at: expected an integer"),
            (lambda p: p.update(id=None), ".id: expected a string, got null"),
            (lambda p: p.update(output={}), ".output: expected an array"),
            (lambda p: p.update(output=[[]]), ".output[0]: expected an object"),
            (lambda p: p.update(usage=[1, 2]), ".usage: expected an object (Usage)"),
            (
                lambda p: p.update(pacing={"first_s": "0"}),
                ".first_s: expected a number",
            ),
            (lambda p: p["request"].update(stream=1), ".stream: expected a boolean"),
            (lambda p: p["request"].update(body=[]), ".body: expected an object"),
            (lambda p: p["request"].update(metadata={"a": 1}), ".metadata['a']"),
            (lambda p: p["request"].update(include=["a", 2]), ".include[1]"),
            (
                lambda p: p["output"][0]["call"].update(fragments=["a", None]),
                ".output[0].call.fragments[1]: expected a string",
            ),
            (lambda p: p.update(context=[{}, 3]), ".context[1]: expected an object"),
            (lambda p: p.update(rule=7), ".rule: expected a string"),
            (lambda p: p.update(bogus=1), "unknown field 'bogus' of ResponsePlan"),
        ]
        for change, words in cases:
            self.refused(self.edited(change), words)

    def test_a_payload_builds_nothing_it_should_not(self) -> None:
        # Whatever the bytes say, only plan classes come back, and JSON values.
        evil = self.edited(
            lambda p: p["request"].update(
                body={"__class__": "os.system", "$": "ResponsePlan", "args": ["id"]}
            )
        )
        back = load(evil)
        self.assertEqual(
            back.request.body,
            {"__class__": "os.system", "$": "ResponsePlan", "args": ["id"]},
        )


class DumpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.plan = plan({"input": "hi"})

    def refused(self, p: ResponsePlan, *words: str) -> None:
        with self.assertRaises(CodecError) as caught:
            dump(p)
        for word in words:
            self.assertIn(word, str(caught.exception))

    def test_values_json_would_not_give_back(self) -> None:
        request = self.plan.request
        deep: list[Any] = []
        for _ in range(300):  # orjson reads 1024 levels, writes 254
            deep = [deep]
        cases: list[tuple[dict[str, Any], str]] = [
            ({"x": float("nan")}, ".request.body: nan has no JSON form"),
            ({"x": (1, 2)}, ".request.body: 'tuple' is not a JSON type"),
            ({"x": {1: 2}}, ".request.body: object key 1 is not a string"),
            ({"x": {"y": [object()]}}, "'object' is not a JSON type"),
            ({"x": 2**64}, "64-bit"),
            ({"x": deep}, "Recursion limit"),
        ]
        for body, words in cases:
            broken = dataclasses.replace(
                self.plan, request=dataclasses.replace(request, body=body)
            )
            self.refused(broken, "cannot dump ResponsePlan", *words)

    def test_fields_of_the_wrong_type(self) -> None:
        self.refused(
            dataclasses.replace(self.plan, id=7),  # type: ignore[arg-type]
            ".id: expected a string",
        )
        self.refused(
            dataclasses.replace(self.plan, pacing=Pacing(first_s=float("inf"))),
            ".pacing.first_s: inf has no JSON form",
        )
        self.refused(
            dataclasses.replace(self.plan, output=[self.plan.output[0]]),  # type: ignore[arg-type]
            ".output: expected a tuple",
        )
        self.refused(
            dataclasses.replace(self.plan, output=(self.plan.usage,)),  # type: ignore[arg-type]
            ".output[0]: expected MessageOutput | CallOutput, got Usage",
        )

        class Sub(Usage):
            pass

        self.refused(
            dataclasses.replace(self.plan, usage=Sub(1, 2)), ".usage: expected Usage"
        )

    def test_defaults_stay_out_and_signs_stay_in(self) -> None:
        data = orjson.loads(dump(self.plan))["ResponsePlan"]["request"]
        self.assertNotIn("store", data)
        self.assertNotIn("tools", data)
        zero = dataclasses.replace(self.plan, delay_s=-0.0)
        self.assertEqual(repr(load(dump(zero)).delay_s), "-0.0")
        self.assertEqual(response_body(load(dump(zero))), response_body(zero))

    def test_plans_are_small(self) -> None:
        self.assertLess(len(dump(self.plan)), 2000)


class ModuleTests(SynchronousTestCase):
    def test_knows_no_twisted(self) -> None:
        # As tests.test_layers checks the rest of the engine: a fresh
        # interpreter, and what importing the codec alone brings in.
        probe = (
            "import sys; import mockai_tw.engine.codec;"
            " print(sorted({n.split('.')[0] for n in sys.modules}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe], check=True, capture_output=True, text=True
        ).stdout
        self.assertNotIn("'twisted'", out)
        self.assertIn("'orjson'", out)

    def test_allow_list(self) -> None:
        self.assertIn(ResponsePlan, codec.PLAN_TYPES)
        short = [c for c in codec.PLAN_TYPES if c is not Usage]
        with self.assertRaises(TypeError) as caught:
            codec.Codec(ResponsePlan, short)
        self.assertIn("Usage is not in the allow-list", str(caught.exception))
        with self.assertRaises(TypeError):
            codec.Codec(Usage, [ResponsePlan])
        with self.assertRaises(TypeError):
            codec.Codec(ResponsePlan, [ResponsePlan])

    def test_unsupported_annotations_fail_at_compile(self) -> None:
        for cls, words in [
            (_WithSet, "unsupported type set[int]"),
            (_WithScalarUnion, "union"),
            (_WithIntKeys, "unsupported type dict[int, str]"),
        ]:
            with self.assertRaises(TypeError) as caught:
                codec.Codec(cls, [cls])
            self.assertIn(words, str(caught.exception))

    def test_other_shapes(self) -> None:
        """Fixed tuples, mappings of typed values, a self-referring class."""
        shapes = codec.Codec(_Shapes, [_Shapes])
        value = _Shapes(
            pair=("a", 1.5),
            counts={"x": 1, "y": -2},
            child=_Shapes(pair=("b", 2), counts={}),
        )
        data = shapes.dump(value)
        self.assertEqual(
            orjson.loads(data),
            {
                "v": 1,
                "_Shapes": {
                    "pair": ["a", 1.5],
                    "counts": {"x": 1, "y": -2},
                    "child": {"pair": ["b", 2], "counts": {}},
                },
            },
        )
        self.assertEqual(shapes.load(data), value)
        self.assertEqual(type(shapes.load(data).child.pair[1]), int)  # type: ignore[union-attr]
        for bad, words in [
            ({"pair": ["a"], "counts": {}}, ".pair: expected an array of 2"),
            ({"pair": ["a", "b"], "counts": {}}, ".pair[1]: expected a number"),
            ({"pair": ["a", 1], "counts": {"k": 1.0}}, ".counts['k']: expected an"),
            (
                {"pair": ["a", 1], "counts": {}, "child": {"pair": ["a", 1]}},
                ".child: missing field 'counts' of _Shapes",
            ),
        ]:
            with self.assertRaises(CodecError) as caught:
                shapes.load(orjson.dumps({"v": 1, "_Shapes": bad}))
            self.assertIn(words, str(caught.exception))
        with self.assertRaises(CodecError) as caught:
            shapes.dump(_Shapes(pair=("a",), counts={}))  # type: ignore[arg-type]
        self.assertIn(".pair: expected a tuple of 2", str(caught.exception))
        with self.assertRaises(CodecError) as caught:
            shapes.dump(_Shapes(pair=("a", 1), counts={1: 1}))  # type: ignore[dict-item]
        self.assertIn(".counts: key 1 is not a string", str(caught.exception))


@dataclasses.dataclass(frozen=True)
class _Shapes:
    pair: tuple[str, float]
    counts: Mapping[str, int]
    child: _Shapes | None = None


@dataclasses.dataclass(frozen=True)
class _WithSet:
    items: set[int]


@dataclasses.dataclass(frozen=True)
class _WithScalarUnion:
    value: str | int


@dataclasses.dataclass(frozen=True)
class _WithIntKeys:
    value: dict[int, str]


# --- a property: any valid request's plan comes back the same ----------------

CHARS = st.characters(exclude_categories=["Cs"])
TEXT = st.text(alphabet=CHARS, min_size=1, max_size=60)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "developer"]), "content": TEXT}
)
BODIES = st.fixed_dictionaries(
    {"input": st.one_of(TEXT, st.lists(MESSAGE, min_size=1, max_size=4))},
    optional={
        "instructions": TEXT,
        "stream": st.booleans(),
        "store": st.booleans(),
        "max_output_tokens": st.integers(16, 64),
        "temperature": st.one_of(st.integers(0, 2), st.floats(0, 2)),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "metadata": st.dictionaries(
            st.text(alphabet=CHARS, min_size=1, max_size=8),
            st.text(alphabet=CHARS, max_size=20),
            max_size=4,
        ),
        "tools": st.just(TOOLS),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "include": st.just(["message.output_text.logprobs"]),
        "top_logprobs": st.integers(0, 5),
        "text": st.sampled_from(
            [
                {"format": {"type": "text"}},
                {"format": {"type": "json_object"}},
                {
                    "format": {
                        "type": "json_schema",
                        "name": "w",
                        "schema": WEATHER,
                        "strict": True,
                    }
                },
            ]
        ),
    },
)


class PropertyTests(SynchronousTestCase):
    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(BODIES)
    def test_any_plan_round_trips(self, body: dict[str, Any]) -> None:
        if "tool_choice" in body and "tools" not in body:
            body.pop("tool_choice")
        try:
            p = plan(body, PROPERTY_ENGINE)
        except ApiError:  # a refused request: nothing to store
            return
        back = load(dump(p))
        self.assertEqual(back, p)
        self.assertEqual(rendered(back), rendered(p))


PROPERTY_ENGINE = engine(rules=RULES, seed=5)
