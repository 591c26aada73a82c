"""Legacy ``/v1/completions`` on a live listener, against OpenAI's schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.engine import tokenizer
from tests.openapi import validate
from tests.support import Live, events, start

PATH = "/v1/completions"
MODEL = "gpt-3.5-turbo-instruct"
FOX = "The quick brown fox jumps over the lazy dog."
LONG = " ".join(f"word{i}" for i in range(40))
BASIC: dict[str, Any] = {"model": MODEL, "prompt": "Say this is a test"}


def validate_chunk(chunk: dict[str, Any]) -> None:
    """Check a stream chunk against ``CreateCompletionResponse``.

    The schema describes both shapes but was written for the whole object: it
    allows neither the ``finish_reason: null`` every chunk but the last carries
    nor the ``usage: null`` of ``include_usage``, which OpenAI's own stream
    sends. Those two are checked by the tests; the rest by the schema.
    """
    checked = copy.deepcopy(chunk)
    if "usage" in checked and checked["usage"] is None:
        del checked["usage"]
    for choice in checked["choices"]:
        if choice["finish_reason"] is None:
            choice["finish_reason"] = "stop"
    validate(checked, "CreateCompletionResponse")


async def post(live: Live, body: dict[str, Any]) -> dict[str, Any]:
    response, payload = await live.json("POST", PATH, body)
    if response.code != 200:
        raise AssertionError(payload)
    validate(payload, "CreateCompletionResponse")
    return dict(payload)


async def stream(live: Live, body: dict[str, Any]) -> tuple[Any, list[Any]]:
    """POST a streaming request; return the response and the decoded chunks."""
    response = await live.request("POST", PATH, {**body, "stream": True})
    payloads = events(await treq.content(response))
    if payloads[-1] != b"[DONE]":
        raise AssertionError(payloads[-1])
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate_chunk(chunk)
    return response, chunks


def count(text: str) -> int:
    return tokenizer.count(text, MODEL)


class NonStreamTests(TestCase):
    async def test_shape(self) -> None:
        live = await start(self, {"replies": [FOX]})
        response, body = await live.json("POST", PATH, BASIC)
        self.assertEqual(response.code, 200)
        validate(body, "CreateCompletionResponse")
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertRegex(response.headers.getRawHeaders("x-request-id")[0], "^req_")
        self.assertRegex(body["id"], r"^cmpl-[A-Za-z0-9]{29}$")
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual(body["model"], MODEL)
        self.assertIsInstance(body["created"], int)
        self.assertEqual(body["system_fingerprint"], "fp_6d2f1a9c0b")
        self.assertEqual(
            body["choices"],
            [{"text": FOX, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        )
        prompt = count(BASIC["prompt"])
        self.assertEqual(
            body["usage"],
            {
                "prompt_tokens": prompt,
                "completion_tokens": count(FOX),
                "total_tokens": prompt + count(FOX),
            },
        )

    async def test_original_replies(self) -> None:
        live = await start(self)
        body = await post(live, {**BASIC, "max_tokens": 100})
        self.assertIn(body["choices"][0]["text"], ORIGINAL_REPLIES)

    async def test_max_tokens_defaults_to_16(self) -> None:
        live = await start(self, {"replies": [LONG]})
        cut = "".join(tokenizer.pieces(LONG, MODEL)[:16])
        for extra in ({}, {"max_tokens": None}):
            body = await post(live, {**BASIC, **extra})
            [choice] = body["choices"]
            self.assertEqual(choice["text"], cut)
            self.assertEqual(choice["finish_reason"], "length")
            self.assertEqual(body["usage"]["completion_tokens"], 16)
        body = await post(live, {**BASIC, "max_tokens": 1000})
        self.assertEqual(body["choices"][0]["text"], LONG)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        body = await post(live, {**BASIC, "max_tokens": 0})
        self.assertEqual(body["choices"][0]["text"], "")
        self.assertEqual(body["choices"][0]["finish_reason"], "length")
        self.assertEqual(body["usage"]["completion_tokens"], 0)

    async def test_stop_and_max_tokens(self) -> None:
        live = await start(self, {"replies": [FOX]})
        body = await post(live, {**BASIC, "stop": [" fox", "zzz"]})
        self.assertEqual(body["choices"][0]["text"], "The quick brown")
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        body = await post(live, {**BASIC, "stop": "lazy"})
        self.assertEqual(
            body["choices"][0]["text"], "The quick brown fox jumps over the "
        )
        body = await post(live, {**BASIC, "max_tokens": 3})
        self.assertEqual(body["choices"][0]["text"], "The quick brown")
        self.assertEqual(body["choices"][0]["finish_reason"], "length")
        self.assertEqual(body["usage"]["completion_tokens"], 3)

    async def test_prompt_shapes(self) -> None:
        live = await start(self, {"replies": [FOX]})
        cases: list[tuple[Any, int, int]] = [
            ("one prompt", 1, count("one prompt")),
            (["first", "second prompt"], 2, count("first") + count("second prompt")),
            ([1212, 318, 257, 1332, 13], 1, 5),
            ([[1212, 318], [257, 1332, 13]], 2, 5),
            ("", 1, 0),
        ]
        for prompt, prompts, tokens in cases:
            body = await post(live, {**BASIC, "prompt": prompt, "n": 2})
            self.assertEqual(
                [c["index"] for c in body["choices"]], list(range(prompts * 2)), prompt
            )
            self.assertEqual(body["usage"]["prompt_tokens"], tokens, prompt)
            self.assertEqual(
                body["usage"]["completion_tokens"], prompts * 2 * count(FOX), prompt
            )

    async def test_choices_are_numbered_prompt_by_prompt(self) -> None:
        live = await start(self, {"replies": ["!"]})
        body = await post(
            live, {**BASIC, "prompt": ["A:", "B:", "C:"], "n": 2, "echo": True}
        )
        self.assertEqual(
            [(c["index"], c["text"]) for c in body["choices"]],
            [(0, "A:!"), (1, "A:!"), (2, "B:!"), (3, "B:!"), (4, "C:!"), (5, "C:!")],
        )

    async def test_echo_and_suffix(self) -> None:
        live = await start(self, {"replies": [FOX]})
        body = await post(live, {**BASIC, "echo": True})
        self.assertEqual(body["choices"][0]["text"], BASIC["prompt"] + FOX)
        self.assertEqual(body["usage"]["completion_tokens"], count(FOX))
        # The suffix is input: counted in the prompt, never sent back.
        body = await post(live, {**BASIC, "suffix": " and that is all."})
        self.assertEqual(body["choices"][0]["text"], FOX)
        self.assertEqual(
            body["usage"]["prompt_tokens"],
            count(BASIC["prompt"]) + count(" and that is all."),
        )

    def check_logprobs(
        self, choice: dict[str, Any], top: int, start_offset: int
    ) -> None:
        logprobs = choice["logprobs"]
        self.assertEqual(
            set(logprobs), {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
        )
        tokens = logprobs["tokens"]
        self.assertEqual("".join(tokens), choice["text"])
        self.assertEqual(tokens, tokenizer.pieces(choice["text"], MODEL))
        for key in ("token_logprobs", "top_logprobs", "text_offset"):
            self.assertEqual(len(logprobs[key]), len(tokens), key)
        offset = start_offset
        for token, logprob, ranked, at in zip(
            tokens,
            logprobs["token_logprobs"],
            logprobs["top_logprobs"],
            logprobs["text_offset"],
            strict=True,
        ):
            self.assertLessEqual(logprob, 0)
            self.assertEqual(at, offset)
            offset += len(token)
            self.assertEqual(len(ranked), top)
            values = list(ranked.values())
            self.assertEqual(values, sorted(values, reverse=True))
            self.assertTrue(all(v <= 0 for v in values))
            if top:
                self.assertEqual(next(iter(ranked.items())), (token, logprob))

    async def test_logprobs(self) -> None:
        live = await start(self, {"replies": [FOX]})
        prompt = BASIC["prompt"]
        for top in (0, 1, 3, 5):
            body = await post(live, {**BASIC, "logprobs": top, "n": 2})
            for choice in body["choices"]:
                self.check_logprobs(choice, top, len(prompt))
        body = await post(live, {**BASIC, "logprobs": 2, "echo": True})
        choice = body["choices"][0]
        self.assertEqual(choice["text"], prompt + FOX)
        self.assertEqual(
            choice["logprobs"]["tokens"],
            tokenizer.pieces(prompt, MODEL) + tokenizer.pieces(FOX, MODEL),
        )
        self.assertEqual(choice["logprobs"]["text_offset"][0], 0)
        body = await post(live, {**BASIC, "logprobs": 1, "max_tokens": 4})
        self.check_logprobs(body["choices"][0], 1, len(prompt))
        self.assertEqual(len(body["choices"][0]["logprobs"]["tokens"]), 4)

    async def test_best_of_bills_every_candidate(self) -> None:
        live = await start(self, {"replies": [FOX]})
        body = await post(live, {**BASIC, "best_of": 3})
        self.assertEqual(len(body["choices"]), 1)
        self.assertEqual(body["usage"]["completion_tokens"], 3 * count(FOX))
        body = await post(live, {**BASIC, "best_of": 4, "n": 2, "prompt": ["a", "b"]})
        self.assertEqual([c["index"] for c in body["choices"]], [0, 1, 2, 3])
        self.assertEqual(body["usage"]["completion_tokens"], 8 * count(FOX))

    async def test_seed_gives_the_same_answer(self) -> None:
        replies = [f"reply number {i}" for i in range(20)]
        live = await start(self, {"replies": replies})
        request = {**BASIC, "n": 6, "seed": 42, "logprobs": 2}
        first = await post(live, request)
        second = await post(live, request)
        self.assertEqual(first["choices"], second["choices"])
        self.assertGreater(len({c["text"] for c in first["choices"]}), 1)
        # Asking for logprobs never changes which replies are picked.
        plain = await post(live, {**request, "logprobs": None})
        self.assertEqual(
            [c["text"] for c in plain["choices"]],
            [c["text"] for c in first["choices"]],
        )

    async def test_sampling_fields_are_accepted(self) -> None:
        live = await start(self, {"replies": [FOX]})
        body = await post(
            live,
            {
                **BASIC,
                "temperature": 0.2,
                "top_p": 0.9,
                "presence_penalty": 1,
                "frequency_penalty": -1.5,
                "logit_bias": {"50256": -100},
                "user": "user-1234",
                "best_of": 1,
                "seed": 7,
            },
        )
        self.assertEqual(body["choices"][0]["text"], FOX)


class StreamTests(TestCase):
    async def test_event_stream(self) -> None:
        live = await start(self, {"replies": ["Hi!"]})
        response, chunks = await stream(live, BASIC)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["text/event-stream; charset=utf-8"],
        )
        self.assertIsNone(response.headers.getRawHeaders("content-length"))
        self.assertEqual(len({(c["id"], c["created"], c["model"]) for c in chunks}), 1)
        self.assertTrue(chunks[0]["id"].startswith("cmpl-"))
        self.assertEqual(
            [c["choices"] for c in chunks],
            [
                [{"text": t, "index": 0, "logprobs": None, "finish_reason": f}]
                for t, f in (("H", None), ("i", None), ("!", None), ("", "stop"))
            ],
        )
        for chunk in chunks:
            self.assertEqual(chunk["object"], "text_completion")
            self.assertEqual(chunk["system_fingerprint"], "fp_6d2f1a9c0b")
            self.assertNotIn("usage", chunk)

    async def test_length_and_include_usage(self) -> None:
        live = await start(self, {"replies": [LONG], "stream": {"chunking": "token"}})
        _, chunks = await stream(
            live, {**BASIC, "stream_options": {"include_usage": True}}
        )
        *content, last = chunks
        for chunk in content:
            self.assertIsNone(chunk["usage"])
        self.assertEqual(len(content), 17)
        self.assertEqual(content[-1]["choices"][0]["finish_reason"], "length")
        text = "".join(c["choices"][0]["text"] for c in content)
        self.assertEqual(text, "".join(tokenizer.pieces(LONG, MODEL)[:16]))
        self.assertEqual(last["choices"], [])
        self.assertEqual(
            last["usage"],
            {
                "prompt_tokens": count(BASIC["prompt"]),
                "completion_tokens": 16,
                "total_tokens": count(BASIC["prompt"]) + 16,
            },
        )

    async def test_prompts_and_n_interleave(self) -> None:
        live = await start(self, {"replies": ["ab"]})
        _, chunks = await stream(
            live, {**BASIC, "prompt": ["x", "y"], "n": 2, "echo": True}
        )
        order = [(c["choices"][0]["index"], c["choices"][0]["text"]) for c in chunks]
        self.assertEqual(
            order,
            [(0, "x"), (1, "x"), (2, "y"), (3, "y")]
            + [(i, "a") for i in range(4)]
            + [(i, "b") for i in range(4)]
            + [(i, "") for i in range(4)],
        )

    async def test_logprobs_stream_one_token_per_chunk(self) -> None:
        live = await start(self, {"replies": [FOX]})
        request = {**BASIC, "logprobs": 2, "seed": 3}
        whole = (await post(live, request))["choices"][0]["logprobs"]
        _, chunks = await stream(live, request)
        *content, last = chunks
        joined: dict[str, list[Any]] = {key: [] for key in whole}
        for chunk in content:
            [choice] = chunk["choices"]
            self.assertEqual(choice["logprobs"]["tokens"], [choice["text"]])
            for key, values in choice["logprobs"].items():
                joined[key].extend(values)
        self.assertEqual(joined, whole)
        self.assertEqual(
            last["choices"][0]["logprobs"],
            {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []},
        )

    async def test_no_reply_text(self) -> None:
        live = await start(self, {"replies": [FOX]})
        _, chunks = await stream(live, {**BASIC, "max_tokens": 0})
        self.assertEqual(
            [c["choices"] for c in chunks],
            [[{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}]],
        )


class ErrorTests(TestCase):
    async def test_bad_input_names_the_param(self) -> None:
        live = await start(self)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"prompt": "hi"}, "model"),
            ({"model": 3, "prompt": "hi"}, "model"),
            ({"model": MODEL}, "prompt"),
            ({**BASIC, "prompt": None}, "prompt"),
            ({**BASIC, "prompt": 12}, "prompt"),
            ({**BASIC, "prompt": []}, "prompt"),
            ({**BASIC, "prompt": [{"text": "hi"}]}, "prompt"),
            ({**BASIC, "prompt": ["ok", 5]}, "prompt[1]"),
            ({**BASIC, "prompt": [1, "two"]}, "prompt[1]"),
            ({**BASIC, "prompt": [1, -2]}, "prompt[1]"),
            ({**BASIC, "prompt": [1, True]}, "prompt[1]"),
            ({**BASIC, "prompt": [[1], []]}, "prompt[1]"),
            ({**BASIC, "prompt": [[1], "x"]}, "prompt[1]"),
            ({**BASIC, "prompt": [[1, 2.5]]}, "prompt[0][1]"),
            ({**BASIC, "prompt": ["p"] * 2049}, "prompt"),
            ({**BASIC, "n": 0}, "n"),
            ({**BASIC, "n": 129}, "n"),
            ({**BASIC, "n": "2"}, "n"),
            ({**BASIC, "max_tokens": -1}, "max_tokens"),
            ({**BASIC, "max_tokens": "16"}, "max_tokens"),
            ({**BASIC, "max_tokens": 1.5}, "max_tokens"),
            ({**BASIC, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
            ({**BASIC, "stop": 4}, "stop"),
            ({**BASIC, "echo": "yes"}, "echo"),
            ({**BASIC, "suffix": 5}, "suffix"),
            ({**BASIC, "logprobs": 6}, "logprobs"),
            ({**BASIC, "logprobs": -1}, "logprobs"),
            ({**BASIC, "logprobs": True}, "logprobs"),
            ({**BASIC, "best_of": 21}, "best_of"),
            ({**BASIC, "best_of": 1, "n": 2}, "best_of"),
            ({**BASIC, "best_of": 2, "stream": True}, "best_of"),
            ({**BASIC, "best_of": "3"}, "best_of"),
            ({**BASIC, "seed": "x"}, "seed"),
            ({**BASIC, "stream": "yes"}, "stream"),
            ({**BASIC, "stream_options": {"include_usage": True}}, "stream_options"),
            (
                {**BASIC, "stream": True, "stream_options": {"include_usage": 1}},
                "stream_options.include_usage",
            ),
            ({**BASIC, "temperature": 2.5}, "temperature"),
            ({**BASIC, "temperature": "hot"}, "temperature"),
            ({**BASIC, "top_p": 1.5}, "top_p"),
            ({**BASIC, "presence_penalty": 3}, "presence_penalty"),
            ({**BASIC, "frequency_penalty": -3}, "frequency_penalty"),
            ({**BASIC, "logit_bias": [1]}, "logit_bias"),
            ({**BASIC, "user": 5}, "user"),
        ]
        for body, param in cases:
            response, payload = await live.json("POST", PATH, body)
            self.assertEqual(response.code, 400, (body, payload))
            validate(payload, "ErrorResponse")
            self.assertEqual(payload["error"]["param"], param, body)
            self.assertEqual(payload["error"]["type"], "invalid_request_error")
        response, payload = await live.json("POST", PATH, raw=b"{nope")
        self.assertEqual((response.code, payload["error"]["param"]), (400, None))
        response, payload = await live.json("POST", PATH, BASIC, token="sk-wrong")
        self.assertEqual(response.code, 401)
        self.assertEqual(payload["error"]["code"], "invalid_api_key")
        response, payload = await live.json("GET", PATH)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])

    async def test_strict_models(self) -> None:
        live = await start(self, {"strict_models": True})
        response, payload = await live.json("POST", PATH, {**BASIC, "model": "nope"})
        self.assertEqual(response.code, 404)
        validate(payload, "ErrorResponse")
        self.assertEqual(payload["error"]["code"], "model_not_found")
        await post(live, BASIC)


class SdkTests(TestCase):
    async def test_create(self) -> None:
        live = await start(self, {"replies": [FOX]})
        client = live.sdk()
        completion = await live.in_thread(
            lambda: client.completions.create(
                model=MODEL, prompt=["Say this", "Say that"], n=2, logprobs=2
            )
        )
        self.assertEqual(completion.object, "text_completion")
        self.assertEqual([c.index for c in completion.choices], [0, 1, 2, 3])
        self.assertEqual(completion.choices[3].text, FOX)
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        logprobs = completion.choices[0].logprobs
        assert logprobs is not None and logprobs.tokens is not None
        self.assertEqual("".join(logprobs.tokens), FOX)
        assert completion.usage is not None
        self.assertEqual(completion.usage.completion_tokens, 4 * count(FOX))

    async def test_stream(self) -> None:
        live = await start(self, {"replies": [FOX]})
        client = live.sdk()

        def consume() -> list[Any]:
            return list(
                client.completions.create(
                    model=MODEL,
                    prompt="Say this is a test",
                    max_tokens=5,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )

        chunks = await live.in_thread(consume)
        *content, last = chunks
        self.assertEqual(
            "".join(c.choices[0].text for c in content),
            "".join(tokenizer.pieces(FOX, MODEL)[:5]),
        )
        self.assertEqual(content[-1].choices[0].finish_reason, "length")
        self.assertEqual(len({c.id for c in chunks}), 1)
        self.assertEqual(last.choices, [])
        assert last.usage is not None
        self.assertEqual(last.usage.completion_tokens, 5)
