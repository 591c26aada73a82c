"""Property tests of the chat engine: cuts keep their bounds, streams rebuild."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mockai_tw.config_load import parse_config
from mockai_tw.engine import tokenizer
from mockai_tw.engine.chat import Engine, apply_limits
from mockai_tw.request.chat import parse_chat_request
from mockai_tw.wire.chat import chat_completion, chat_stream

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MODELS = st.sampled_from(["gpt-4o", "gpt-4", "gpt-3.5-turbo"])
TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=200
)
SCALAR = st.sampled_from(
    [
        {"type": "string"},
        {"type": "integer", "minimum": 0, "maximum": 99},
        {"type": "number"},
        {"type": "boolean"},
        {"enum": ["a", "b", "c"]},
        {"type": "string", "format": "date"},
        {"type": "array", "items": {"type": "string"}, "maxItems": 4},
    ]
)
PARAMETERS = st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True), SCALAR, min_size=0, max_size=5
).map(lambda props: {"type": "object", "properties": props, "required": list(props)})


def events_of(plan: Any) -> list[dict[str, Any]]:
    out = []
    for _, data in chat_stream(plan):
        assert isinstance(data, bytes) and data.startswith(b"data: ")
        payload = data[len(b"data: ") : -2]
        if payload != b"[DONE]":
            out.append(json.loads(payload))
    return out


class LimitProperties(SynchronousTestCase):
    @SETTINGS
    @given(TEXT, st.integers(min_value=1, max_value=60), MODELS)
    def test_max_tokens_is_never_exceeded(
        self, text: str, limit: int, model: str
    ) -> None:
        cut, finish = apply_limits(text, (), limit, model)
        self.assertTrue(text.startswith(cut))
        self.assertLessEqual(tokenizer.count(cut, model), limit)
        self.assertEqual(finish == "length", cut != text)

    @SETTINGS
    @given(
        TEXT, st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4), MODELS
    )
    def test_stop_cuts_before_every_stop(
        self, text: str, stops: list[str], model: str
    ) -> None:
        cut, _ = apply_limits(text, stops, None, model)
        self.assertTrue(text.startswith(cut))
        for stop in stops:
            self.assertNotIn(stop, cut)


class StreamProperties(SynchronousTestCase):
    @SETTINGS
    @given(st.lists(PARAMETERS, min_size=1, max_size=3), st.integers(0, 2**31), MODELS)
    def test_tool_call_fragments_rebuild_the_arguments(
        self, schemas: list[dict[str, Any]], seed: int, model: str
    ) -> None:
        tools = [
            {"type": "function", "function": {"name": f"tool_{i}", "parameters": p}}
            for i, p in enumerate(schemas)
        ]
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "go"}],
            "tools": tools,
            "tool_choice": "required",
            "seed": seed,
        }
        engine = Engine(parse_config({"access_token": "t"}, {}))
        whole = json.loads(
            chat_completion(
                engine.chat(parse_chat_request(json.dumps(body).encode()), 0)
            )
        )
        streamed = engine.chat(
            parse_chat_request(json.dumps({**body, "stream": True}).encode()), 0
        )
        calls: dict[int, dict[str, str]] = {}
        for chunk in events_of(streamed):
            for call in chunk["choices"][0]["delta"].get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"name": "", "arguments": ""})
                slot["name"] += call.get("function", {}).get("name", "")
                slot["arguments"] += call.get("function", {}).get("arguments", "")
        expected = [
            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for c in whole["choices"][0]["message"]["tool_calls"]
        ]
        self.assertEqual([calls[i] for i in sorted(calls)], expected)

    @SETTINGS
    @given(TEXT.filter(bool), st.sampled_from(["char", "word", "token"]), MODELS)
    def test_streamed_text_is_the_reply(self, text: str, mode: str, model: str) -> None:
        config = parse_config(
            {"access_token": "t", "replies": [text], "stream": {"chunking": mode}}, {}
        )
        request = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        engine = Engine(config)
        plan = engine.chat(
            parse_chat_request(json.dumps({**request, "stream": True}).encode()), 0
        )
        content = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in events_of(plan)
        )
        self.assertEqual(content, text)
