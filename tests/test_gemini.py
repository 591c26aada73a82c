"""The Gemini API, through the official ``google-genai`` SDK and raw."""

from __future__ import annotations

import json
import warnings
from typing import Any

import jsonschema
from google import genai
from google.genai import errors, types

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, ToolCallPlan, Usage
from mockai_tw.errors import ApiError
from mockai_tw.request.gemini import json_schema, parse_generate_request
from mockai_tw.wire import gemini as wire
from tests.support import TOKEN, Live, start

MODEL = "gemini-2.5-flash"
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent"
HELLO: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "unit": types.Schema(
                type=types.Type.STRING, enum=["celsius", "fahrenheit"]
            ),
            "days": types.Schema(type=types.Type.INTEGER, minimum=1, maximum=7),
        },
        required=["city", "unit", "days"],
    ),
)
# What the declaration means, as JSON Schema.
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}


def client(live: Live, key: str = TOKEN, version: str | None = None) -> genai.Client:
    sdk = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=live.root,
            api_version=version,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    live.clients.append(sdk)
    return sdk


async def post(
    live: Live,
    path: str,
    body: Any,
    key: str | None = TOKEN,
    extra: dict[str, str] | None = None,
) -> tuple[Any, bytes]:
    headers = {"x-goog-api-key": key} if key is not None else {}
    headers.update(extra or {})
    response = await live.request("POST", path, body, token=None, headers=headers)
    return response, await treq.content(response)


def chunks(body: bytes) -> list[Any]:
    """The SSE ``data:`` payloads, checking Google's CRLF framing."""
    assert body.endswith(b"\r\n\r\n"), body[-40:]
    out = []
    for block in body[:-4].split(b"\r\n\r\n"):
        assert block.startswith(b"data: "), block[:40]
        out.append(json.loads(block[6:]))
    return out


def validated(payload: Any) -> types.GenerateContentResponse:
    """``payload`` as the SDK's own type; an unknown enum value (which the SDK
    only warns about) fails too."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return types.GenerateContentResponse.model_validate(payload)


def google_error(case: TestCase, body: bytes, code: int, status: str) -> str:
    payload = json.loads(body)
    case.assertEqual(set(payload), {"error"})
    case.assertEqual(payload["error"]["code"], code)
    case.assertEqual(payload["error"]["status"], status)
    message: str = payload["error"]["message"]
    return message


class GenerateContentTests(TestCase):
    async def test_plain_text_through_the_sdk_and_raw(self) -> None:
        live = await start(self, {"replies": ["Hello from the mock."]})
        paths: list[bytes] = []
        live.server.hooks.on(
            "first_byte", lambda request, _: paths.append(request.path)
        )
        sdk = client(live)
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents="Say hello",
                config=types.GenerateContentConfig(system_instruction="Be terse."),
            )
        )
        self.assertEqual(response.text, "Hello from the mock.")
        assert response.candidates is not None
        self.assertEqual(response.candidates[0].finish_reason, types.FinishReason.STOP)
        usage = response.usage_metadata
        assert usage is not None
        assert usage.prompt_token_count is not None
        assert usage.candidates_token_count is not None
        self.assertGreater(usage.prompt_token_count, 0)
        self.assertGreater(usage.candidates_token_count, 0)
        self.assertEqual(
            usage.total_token_count,
            usage.prompt_token_count + usage.candidates_token_count,
        )
        self.assertEqual(response.model_version, MODEL)
        beta = client(live, version="v1beta")
        again = await live.in_thread(
            lambda: beta.models.generate_content(model=MODEL, contents="Say hello")
        )
        self.assertEqual(again.text, "Hello from the mock.")
        self.assertEqual(
            paths, [f"/v1/models/{MODEL}:generateContent".encode(), GENERATE.encode()]
        )
        raw, body = await post(live, GENERATE, HELLO)
        self.assertEqual(raw.code, 200)
        payload = json.loads(body)
        validated(payload)
        (candidate,) = payload["candidates"]
        self.assertEqual(candidate["content"]["role"], "model")
        self.assertEqual(
            candidate["content"]["parts"], [{"text": "Hello from the mock."}]
        )
        self.assertEqual(candidate["index"], 0)
        self.assertTrue(candidate["safetyRatings"])
        self.assertTrue(payload["responseId"])

    async def test_key_in_the_query_and_bearer(self) -> None:
        live = await start(self)
        response, body = await post(live, GENERATE + f"?key={TOKEN}", HELLO, key=None)
        self.assertEqual(response.code, 200, body)
        response = await live.request("POST", GENERATE, HELLO)
        self.assertEqual(response.code, 200)

    async def test_stream_joins_to_the_non_streamed_text(self) -> None:
        live = await start(self, {"replies": ["One two three four five six seven."]})
        sdk = client(live)
        config = types.GenerateContentConfig(seed=7, temperature=0.5, top_k=20)

        def streamed() -> list[types.GenerateContentResponse]:
            return list(
                sdk.models.generate_content_stream(
                    model=MODEL, contents="Count", config=config
                )
            )

        parts = await live.in_thread(streamed)
        whole = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents="Count", config=config
            )
        )
        self.assertGreater(len(parts), 1)
        self.assertEqual("".join(p.text or "" for p in parts), whole.text)
        self.assertEqual(whole.text, "One two three four five six seven.")
        last = parts[-1]
        assert last.candidates is not None
        self.assertEqual(last.candidates[0].finish_reason, types.FinishReason.STOP)
        for early in parts[:-1]:
            assert early.candidates is not None
            self.assertIsNone(early.candidates[0].finish_reason)
        assert last.usage_metadata is not None and whole.usage_metadata is not None
        self.assertEqual(
            last.usage_metadata.total_token_count,
            whole.usage_metadata.total_token_count,
        )
        response, body = await post(live, STREAM + "?alt=sse", HELLO)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["text/event-stream; charset=utf-8"],
        )
        for chunk in chunks(body):
            validated(chunk)

    async def test_stream_without_alt_sse_is_a_json_array(self) -> None:
        live = await start(self, {"replies": ["One two three four five."]})
        response, body = await post(live, STREAM, HELLO)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["application/json; charset=UTF-8"],
        )
        # Google's framing: "[" first, ",\r\n" between elements, "]" last.
        self.assertTrue(body.startswith(b"[{"), body[:20])
        self.assertTrue(body.endswith(b"}\n]"), body[-20:])
        self.assertEqual(body.count(b"\n,\r\n{"), len(json.loads(body)) - 1)
        elements = json.loads(body)
        self.assertGreater(len(elements), 1)
        text = ""
        for element in elements:
            parsed = validated(element)
            text += parsed.text or ""
        self.assertEqual(text, "One two three four five.")
        self.assertEqual(elements[-1]["candidates"][0]["finishReason"], "STOP")
        _, sse_body = await post(live, STREAM + "?alt=sse", HELLO)
        self.assertEqual(
            [validated(c).text for c in chunks(sse_body)],
            [validated(e).text for e in elements],
        )
        response, body = await post(live, STREAM + "?alt=media", HELLO)
        self.assertEqual(response.code, 400)
        self.assertIn("alt", google_error(self, body, 400, "INVALID_ARGUMENT"))

    async def test_function_calling_loop(self) -> None:
        live = await start(self, {"tools": {"auto_probability": 1.0}})
        sdk = client(live)
        tools: list[Any] = [types.Tool(function_declarations=[WEATHER])]
        question = types.Content(
            role="user", parts=[types.Part(text="Weather in Paris?")]
        )
        config = types.GenerateContentConfig(
            tools=tools,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(
                disable=True
            ),
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode.ANY,
                    allowed_function_names=["get_weather"],
                )
            ),
        )
        first = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents=[question], config=config
            )
        )
        calls = first.function_calls
        assert calls is not None
        (call,) = calls
        self.assertEqual(call.name, "get_weather")
        jsonschema.validate(call.args, WEATHER_SCHEMA)
        assert first.candidates is not None and first.candidates[0].content is not None
        answer = types.Part.from_function_response(
            name="get_weather", response={"temperature": 21}
        )
        auto = config.model_copy(update={"tool_config": None})
        final = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents=[
                    question,
                    first.candidates[0].content,  # type: ignore[index]
                    types.Content(role="user", parts=[answer]),
                ],
                config=auto,
            )
        )
        self.assertIsNone(final.function_calls)
        self.assertTrue(final.text)

    async def test_function_call_in_the_stream(self) -> None:
        live = await start(self)
        body = {
            **HELLO,
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "get_weather", "parameters": WEATHER_SCHEMA}
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        }
        response, raw = await post(live, STREAM + "?alt=sse", body)
        self.assertEqual(response.code, 200)
        sent = chunks(raw)
        calls = [
            p["functionCall"]
            for c in sent
            for p in c["candidates"][0]["content"]["parts"]
            if "functionCall" in p
        ]
        (call,) = calls
        jsonschema.validate(call["args"], WEATHER_SCHEMA)
        self.assertEqual(sent[-1]["candidates"][0]["finishReason"], "STOP")

    async def test_json_schema_output(self) -> None:
        live = await start(self)
        sdk = client(live)
        schema = types.Schema(
            type=types.Type.OBJECT,
            properties={
                "name": types.Schema(type=types.Type.STRING),
                "age": types.Schema(type=types.Type.INTEGER, nullable=True),
                "tags": types.Schema(
                    type=types.Type.ARRAY,
                    items=types.Schema(type=types.Type.STRING),
                    min_items=2,
                ),
            },
            required=["name", "age", "tags"],
            property_ordering=["name", "age", "tags"],
        )
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents="A person",
                config=types.GenerateContentConfig(
                    response_mime_type="application/json", response_schema=schema
                ),
            )
        )
        assert response.text is not None
        value = json.loads(response.text)
        jsonschema.validate(
            value,
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": ["integer", "null"]},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                    },
                },
                "required": ["name", "age", "tags"],
            },
        )
        plain = {"type": "object", "properties": {"n": {"type": "integer"}}}
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents="A number",
                config=types.GenerateContentConfig(
                    response_mime_type="application/json", response_json_schema=plain
                ),
            )
        )
        assert response.text is not None
        jsonschema.validate(json.loads(response.text), plain)

    async def test_max_output_tokens(self) -> None:
        live = await start(
            self, {"replies": ["A rather long reply that will not fit at all."]}
        )
        sdk = client(live)
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents="Go on",
                config=types.GenerateContentConfig(max_output_tokens=3),
            )
        )
        assert response.candidates is not None and response.usage_metadata is not None
        self.assertEqual(
            response.candidates[0].finish_reason, types.FinishReason.MAX_TOKENS
        )
        self.assertEqual(response.usage_metadata.candidates_token_count, 3)

    async def test_count_tokens_equals_the_prompt_count(self) -> None:
        live = await start(self)
        sdk = client(live)
        contents = [
            types.Content(role="user", parts=[types.Part(text="How long is this?")]),
            types.Content(role="model", parts=[types.Part(text="Let me see.")]),
            types.Content(role="user", parts=[types.Part(text="Well?")]),
        ]
        counted = await live.in_thread(
            lambda: sdk.models.count_tokens(model=MODEL, contents=contents)
        )
        answered = await live.in_thread(
            lambda: sdk.models.generate_content(model=MODEL, contents=contents)
        )
        assert answered.usage_metadata is not None
        self.assertGreater(counted.total_tokens or 0, 0)
        self.assertEqual(
            counted.total_tokens, answered.usage_metadata.prompt_token_count
        )

    async def test_candidate_count(self) -> None:
        live = await start(self)
        body = {**HELLO, "generationConfig": {"candidateCount": 3}}
        response, raw = await post(live, GENERATE, body)
        self.assertEqual(response.code, 200)
        payload = json.loads(raw)
        self.assertEqual([c["index"] for c in payload["candidates"]], [0, 1, 2])
        response, raw = await post(live, STREAM + "?alt=sse", body)
        self.assertIn(
            "candidate_count", google_error(self, raw, 400, "INVALID_ARGUMENT")
        )


class AuthAndErrorTests(TestCase):
    async def test_bad_key_is_a_400_as_on_the_real_api(self) -> None:
        live = await start(self)
        sdk = client(live, key="not-the-key")
        with self.assertRaises(errors.ClientError) as raised:
            await live.in_thread(
                lambda: sdk.models.generate_content(model=MODEL, contents="Hi")
            )
        self.assertEqual(raised.exception.code, 400)
        self.assertEqual(raised.exception.status, "INVALID_ARGUMENT")
        self.assertIn("API key not valid", raised.exception.message or "")

    async def test_missing_key_is_a_403(self) -> None:
        live = await start(self)
        response, body = await post(live, GENERATE, HELLO, key=None)
        self.assertEqual(response.code, 403)
        google_error(self, body, 403, "PERMISSION_DENIED")

    async def test_errors_below_v1beta_are_googles(self) -> None:
        live = await start(self, {"strict_models": True})
        response, body = await post(live, "/v1beta/models/nope:generateContent", HELLO)
        self.assertEqual(response.code, 404)
        self.assertIn("models/nope", google_error(self, body, 404, "NOT_FOUND"))
        response, body = await post(live, f"/v1beta/models/{MODEL}:frobnicate", HELLO)
        google_error(self, body, 404, "NOT_FOUND")
        response, body = await post(live, "/v1beta/nothing", HELLO)
        google_error(self, body, 404, "NOT_FOUND")
        response = await live.request(
            "GET", GENERATE, token=None, headers={"x-goog-api-key": TOKEN}
        )
        self.assertEqual(response.code, 405)
        google_error(self, await treq.content(response), 405, "INVALID_ARGUMENT")
        for bad, words in [
            ({}, "contents is not specified"),
            ({**HELLO, "extra": 1}, 'Unknown name "extra"'),
            (
                {"contents": [{"role": "robot", "parts": [{"text": "x"}]}]},
                "valid role",
            ),
            ({**HELLO, "generationConfig": {"temperature": 3}}, "temperature"),
            (
                {**HELLO, "generationConfig": {"responseMimeType": "text/csv"}},
                "response_mime_type",
            ),
        ]:
            response, body = await post(live, GENERATE, bad)
            self.assertEqual(response.code, 400, bad)
            self.assertIn(words, google_error(self, body, 400, "INVALID_ARGUMENT"))

    async def test_faults_answer_in_googles_shape(self) -> None:
        live = await start(self, {"faults": {"header": True}})
        sdk = client(live)
        fault = types.HttpOptions(headers={"x-mock-fault": "http_503"})
        with self.assertRaises(errors.ServerError) as raised:
            await live.in_thread(
                lambda: sdk.models.generate_content(
                    model=MODEL,
                    contents="Hi",
                    config=types.GenerateContentConfig(http_options=fault),
                )
            )
        self.assertEqual(raised.exception.code, 503)
        self.assertEqual(raised.exception.status, "UNAVAILABLE")
        for kind, code, status in [
            ("http_500", 500, "INTERNAL"),
            # Google never answers 529: an overload is its 503.
            ("overloaded", 503, "UNAVAILABLE"),
        ]:
            response, body = await post(
                live, STREAM + "?alt=sse", HELLO, extra={"x-mock-fault": kind}
            )
            self.assertEqual(response.code, code)
            message = google_error(self, body, code, status)
            self.assertNotIn("OpenAI", message)
            if kind == "overloaded":
                self.assertEqual(
                    message, "The model is overloaded. Please try again later."
                )

    async def test_rule_for_the_gemini_endpoint(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "name": "gemini-order",
                        "match": {
                            "endpoint": "gemini",
                            "content": {"contains": "order"},
                        },
                        "answer": "Gemini side: {{model}}.",
                    },
                    {"match": {"endpoint": "chat"}, "answer": "Chat side."},
                ]
            },
        )
        seen: list[Any] = []
        live.server.hooks.on("first_byte", lambda request, status: seen.append(request))
        sdk = client(live)
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents="Where is my order?"
            )
        )
        self.assertEqual(response.text, f"Gemini side: {MODEL}.")
        other = await live.in_thread(
            lambda: sdk.models.generate_content(model=MODEL, contents="Hello")
        )
        self.assertNotEqual(other.text, "Chat side.")
        self.assertNotEqual(other.text, f"Gemini side: {MODEL}.")
        self.assertEqual([r.endpoint for r in seen], ["gemini", "gemini"])
        # The SDK's default version is v1: /v1/models/… from a Gemini client.
        (record, _) = live.server.journal.query(
            path=f"/v1/models/{MODEL}:generateContent"
        )
        self.assertEqual(record["rule"], "gemini-order")

    async def test_rate_limit_is_resource_exhausted(self) -> None:
        live = await start(
            self, {"rate_limits": {"enabled": True, "requests_per_minute": 1}}
        )
        sdk = client(live)
        await live.in_thread(
            lambda: sdk.models.generate_content(model=MODEL, contents="Hi")
        )
        with self.assertRaises(errors.ClientError) as raised:
            await live.in_thread(
                lambda: sdk.models.generate_content(model=MODEL, contents="Hi")
            )
        error = raised.exception
        self.assertEqual(error.code, 429)
        self.assertEqual(error.status, "RESOURCE_EXHAUSTED")
        self.assertIn("quota", error.message or "")
        assert error.response is not None
        self.assertEqual(error.response.headers["retry-after"], "60")
        self.assertNotIn("x-ratelimit-limit-requests", error.response.headers)


class EmbeddingsTests(TestCase):
    async def test_embed_content_through_the_sdk_and_raw(self) -> None:
        live = await start(self)
        sdk = client(live)
        model = "gemini-embedding-001"
        result = await live.in_thread(
            lambda: sdk.models.embed_content(
                model=model,
                contents=["the cat", "the dog", "the cat"],
                config=types.EmbedContentConfig(output_dimensionality=8),
            )
        )
        assert result.embeddings is not None
        vectors = [e.values for e in result.embeddings]
        self.assertEqual([len(v or []) for v in vectors], [8, 8, 8])
        self.assertEqual(vectors[0], vectors[2])
        self.assertNotEqual(vectors[0], vectors[1])
        response, body = await post(
            live,
            f"/v1beta/models/{model}:embedContent",
            {"content": {"parts": [{"text": "the cat"}]}, "outputDimensionality": 8},
        )
        self.assertEqual(response.code, 200)
        payload = json.loads(body)
        self.assertEqual(set(payload), {"embedding"})
        self.assertEqual(len(payload["embedding"]["values"]), 8)
        response, body = await post(
            live, f"/v1beta/models/{model}:embedContent", {"content": {"parts": []}}
        )
        google_error(self, body, 400, "INVALID_ARGUMENT")
        full = await live.in_thread(
            lambda: sdk.models.embed_content(model=model, contents="the cat")
        )
        assert full.embeddings is not None
        self.assertEqual(len(full.embeddings[0].values or []), 3072)


class ModelsTests(TestCase):
    async def test_list_and_get(self) -> None:
        live = await start(self)
        sdk = client(live)
        model = await live.in_thread(lambda: sdk.models.get(model=MODEL))
        self.assertEqual(model.name, f"models/{MODEL}")
        self.assertIn("generateContent", model.supported_actions or [])
        names = await live.in_thread(
            lambda: [m.name for m in sdk.models.list(config={"page_size": 100})]
        )
        self.assertIn(f"models/{MODEL}", names)
        self.assertIn("models/gpt-4o", names)
        response = await live.request(
            "GET", "/v1beta/models/nope", token=None, headers={"x-goog-api-key": TOKEN}
        )
        google_error(self, await treq.content(response), 404, "NOT_FOUND")


def _plan(choice: ChoicePlan) -> ChatPlan:
    return ChatPlan(
        id="chatcmpl-abc123",
        created=0,
        model=MODEL,
        system_fingerprint="fp",
        choices=(choice,),
        usage=Usage(5, 7),
        pacing=Pacing(first_s=0.5, interval_s=0.25),
    )


class WireTests(TestCase):
    def test_stream_is_paced_by_the_plan(self) -> None:
        text = list(wire.generate_stream(_plan(ChoicePlan(0, ("a", "b", "c"), "stop"))))
        self.assertEqual([due for due, _ in text], [0.5, 0.75, 1.0])
        call = ToolCallPlan("call_x", "f", '{"a":1}', ('{"a"', ":1}"))
        calls = ChoicePlan(0, (), "tool_calls", tool_calls=(call, call))
        paced = list(wire.generate_stream(_plan(calls)))
        # Each call is due when its last fragment would be in the chat stream.
        self.assertEqual([due for due, _ in paced], [0.75, 1.5])

    def test_error_shapes(self) -> None:
        for status, name in [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (418, "INVALID_ARGUMENT"),
            (502, "INTERNAL"),
        ]:
            body = json.loads(wire.error_body(ApiError(status, "m")))
            self.assertEqual(
                body, {"error": {"code": status, "message": "m", "status": name}}
            )
        event = wire.error_event(ApiError(500, "m"))
        self.assertEqual(chunks(event)[0]["error"]["status"], "INTERNAL")

    def test_schema_conversion(self) -> None:
        self.assertEqual(
            json_schema(
                {
                    "type": "OBJECT",
                    "properties": {
                        "a": {"type": "STRING", "format": "enum", "enum": ["x"]},
                        "b": {
                            "type": "ARRAY",
                            "items": {"type": "NUMBER"},
                            "maxItems": "3",
                        },
                        "c": {"anyOf": [{"type": "BOOLEAN"}, {"type": "NULL"}]},
                    },
                    "propertyOrdering": ["a", "b", "c"],
                    "nullable": True,
                },
                "p",
            ),
            {
                "type": ["object", "null"],
                "properties": {
                    "a": {"type": "string", "enum": ["x"]},
                    "b": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
                    "c": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                },
            },
        )

    def test_function_responses_answer_the_calls_before(self) -> None:
        body = {
            "contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "f", "args": {"a": 1}}},
                        {"functionCall": {"name": "g", "args": {}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "g", "response": {"ok": 1}}},
                        {"functionResponse": {"name": "f", "response": {"ok": 2}}},
                    ],
                },
            ]
        }
        request = parse_generate_request(json.dumps(body).encode(), MODEL)
        messages = request.chat.messages
        self.assertEqual(
            [m.role for m in messages], ["user", "assistant", "tool", "tool"]
        )
        ids = [c["id"] for c in messages[1].raw["tool_calls"]]
        self.assertEqual(
            [m.raw["tool_call_id"] for m in messages[2:]], [ids[1], ids[0]]
        )
        self.assertEqual(request.chat.last_role, "tool")


class SdkErrorClassTests(TestCase):
    """Every status reaches google-genai as its error class, code and status."""

    async def test_each_status_is_the_sdks_error(self) -> None:
        expected: dict[int, tuple[type[errors.APIError], str]] = {
            400: (errors.ClientError, "INVALID_ARGUMENT"),
            403: (errors.ClientError, "PERMISSION_DENIED"),
            404: (errors.ClientError, "NOT_FOUND"),
            429: (errors.ClientError, "RESOURCE_EXHAUSTED"),
            500: (errors.ServerError, "INTERNAL"),
            503: (errors.ServerError, "UNAVAILABLE"),
        }
        rules = [
            {
                "match": {"headers": {"x-scenario": str(status)}},
                "answer": {"error": status},
            }
            for status in expected
        ]
        live = await start(self, {"rules": rules})
        sdk = client(live)
        for status, (cls, name) in expected.items():
            config = types.GenerateContentConfig(
                http_options=types.HttpOptions(headers={"x-scenario": str(status)})
            )

            def call(config: types.GenerateContentConfig = config) -> Any:
                return sdk.models.generate_content(
                    model="gemini-2.5-flash", contents="hi", config=config
                )

            with self.assertRaises(errors.APIError) as raised:
                await live.in_thread(call)
            self.assertIsInstance(raised.exception, cls)
            self.assertEqual(raised.exception.code, status)
            self.assertEqual(raised.exception.status, name, raised.exception.details)
