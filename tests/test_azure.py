"""The Azure OpenAI flavour: deployments, api-version, api-key, filter annotations."""

from __future__ import annotations

import json
from typing import Any

import openai

import treq
from twisted.trial.unittest import TestCase
from twisted.web.iweb import IResponse

from mockai_tw.config import ORIGINAL_REPLIES
from tests.openapi import validate
from tests.support import TOKEN, Live, events, start
from tests.test_completions import validate_chunk

DEPLOYMENT = "my-gpt4o"
VERSION = "2024-10-21"
BASE = f"/openai/deployments/{DEPLOYMENT}"
CHAT = f"{BASE}/chat/completions?api-version={VERSION}"
LEGACY = f"{BASE}/completions?api-version={VERSION}"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]
KEY = {"api-key": TOKEN}
UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
FILTERS = {
    category: {"filtered": False, "severity": "safe"}
    for category in ("hate", "self_harm", "sexual", "violence")
}


def prompt_filters(prompts: int = 1) -> list[dict[str, Any]]:
    return [
        {"prompt_index": i, "content_filter_results": FILTERS} for i in range(prompts)
    ]


def azure_client(live: Live, **kw: Any) -> openai.AzureOpenAI:
    kw.setdefault("api_key", TOKEN)
    client = openai.AzureOpenAI(
        azure_endpoint=live.root, api_version=VERSION, max_retries=0, **kw
    )
    live.clients.append(client)
    return client


async def azure_json(
    live: Live, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[IResponse, Any]:
    """A request with the key in ``api-key`` (as Azure clients send it)."""
    kw.setdefault("token", None)
    kw.setdefault("headers", KEY)
    return await live.json(method, path, body, **kw)


async def azure_stream(live: Live, path: str, body: Any) -> tuple[IResponse, list[Any]]:
    response = await live.request(
        "POST", path, {**body, "stream": True}, token=None, headers=KEY
    )
    payloads = events(await treq.content(response))
    if payloads[-1] != b"[DONE]":
        raise AssertionError(payloads[-1])
    return response, [json.loads(p) for p in payloads[:-1]]


class AzureTestCase(TestCase):
    def assertAzureHeaders(self, response: IResponse) -> None:
        [apim] = response.headers.getRawHeaders("apim-request-id")
        self.assertRegex(apim, UUID4)
        [request_id] = response.headers.getRawHeaders("x-request-id")
        self.assertRegex(request_id, r"^req_[0-9a-f]{32}$")
        self.assertEqual(
            response.headers.getRawHeaders("openai-version"), ["2020-10-01"]
        )

    def assertAzureError(
        self, response: IResponse, payload: Any, status: int, code: str, text: str
    ) -> None:
        self.assertEqual(response.code, status, payload)
        self.assertEqual(set(payload), {"error"})
        self.assertEqual(set(payload["error"]), {"code", "message"})
        self.assertEqual(payload["error"]["code"], code)
        self.assertIn(text, payload["error"]["message"])
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertAzureHeaders(response)


class SdkTests(AzureTestCase):
    async def test_chat(self) -> None:
        live = await start(self)
        client = azure_client(live)
        raw = await live.in_thread(
            lambda: client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES
            )
        )
        self.assertRegex(raw.headers["apim-request-id"], UUID4)
        completion = raw.parse()
        self.assertEqual(completion.model, "gpt-4o")
        [choice] = completion.choices
        self.assertIn(choice.message.content, ORIGINAL_REPLIES)
        self.assertEqual(choice.finish_reason, "stop")
        assert completion.model_extra is not None and choice.model_extra is not None
        self.assertEqual(
            completion.model_extra["prompt_filter_results"], prompt_filters()
        )
        self.assertEqual(choice.model_extra["content_filter_results"], FILTERS)

    async def test_chat_stream(self) -> None:
        live = await start(self)
        client = azure_client(live)

        def consume() -> list[Any]:
            return list(
                client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True
                )
            )

        first, *chunks = await live.in_thread(consume)
        self.assertEqual(first.choices, [])
        assert first.model_extra is not None
        self.assertEqual(first.model_extra["prompt_filter_results"], prompt_filters())
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertIn(text, ORIGINAL_REPLIES)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        self.assertEqual(len({c.id for c in chunks}), 1)
        for chunk in chunks:
            extra = chunk.choices[0].model_extra
            assert extra is not None
            self.assertEqual(extra["content_filter_results"], FILTERS)

    async def test_legacy_completions(self) -> None:
        live = await start(self, {"replies": ["Done."]})
        client = azure_client(live)
        completion = await live.in_thread(
            lambda: client.completions.create(
                model="gpt-35-turbo-instruct", prompt=["one", "two"]
            )
        )
        self.assertEqual(completion.model, "gpt-35-turbo-instruct")
        self.assertEqual([c.text for c in completion.choices], ["Done.", "Done."])
        assert completion.model_extra is not None
        self.assertEqual(
            completion.model_extra["prompt_filter_results"], prompt_filters(2)
        )

    async def test_embeddings(self) -> None:
        live = await start(self)
        client = azure_client(live)
        raw = await live.in_thread(
            lambda: client.embeddings.with_raw_response.create(
                model="text-embedding-3-small", input=["hello", "world"]
            )
        )
        self.assertRegex(raw.headers["apim-request-id"], UUID4)
        result = raw.parse()
        self.assertEqual(result.model, "text-embedding-3-small")
        self.assertEqual([len(d.embedding) for d in result.data], [1536, 1536])

    async def test_errors_map_to_sdk_exceptions(self) -> None:
        live = await start(self)
        with self.assertRaises(openai.AuthenticationError):
            await live.in_thread(
                lambda: azure_client(live, api_key="wrong").chat.completions.create(
                    model="gpt-4o", messages=MESSAGES
                )
            )
        with self.assertRaises(openai.BadRequestError) as bad:
            await live.in_thread(
                lambda: azure_client(live).chat.completions.create(
                    model="gpt-4o", messages=[]
                )
            )
        self.assertEqual(bad.exception.param, "messages")


class WireTests(AzureTestCase):
    async def test_chat_body(self) -> None:
        live = await start(self)
        response, body = await azure_json(live, "POST", CHAT, {"messages": MESSAGES})
        self.assertEqual(response.code, 200, body)
        self.assertAzureHeaders(response)
        validate(body, "CreateChatCompletionResponse")
        # No model in the body: the deployment names it.
        self.assertEqual(body["model"], DEPLOYMENT)
        self.assertEqual(body["prompt_filter_results"], prompt_filters())
        self.assertEqual(body["choices"][0]["content_filter_results"], FILTERS)
        _, body = await azure_json(
            live, "POST", CHAT, {"model": "gpt-4o-2024-08-06", "messages": MESSAGES}
        )
        self.assertEqual(body["model"], "gpt-4o-2024-08-06")

    async def test_chat_stream_starts_with_the_filter_chunk(self) -> None:
        live = await start(self, {"replies": ["Hi"]})
        response, chunks = await azure_stream(live, CHAT, {"messages": MESSAGES})
        self.assertAzureHeaders(response)
        first, *rest = chunks
        self.assertEqual(
            first,
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": prompt_filters(),
            },
        )
        self.assertEqual(
            [c["choices"][0]["delta"] for c in rest],
            [
                {"role": "assistant", "content": "", "refusal": None},
                {"content": "H"},
                {"content": "i"},
                {},
            ],
        )
        for chunk in rest:
            validate(chunk, "CreateChatCompletionStreamResponse")
            self.assertEqual(chunk["model"], DEPLOYMENT)
            self.assertEqual(chunk["choices"][0]["content_filter_results"], FILTERS)

    async def test_legacy_completions(self) -> None:
        live = await start(self, {"replies": ["ok"]})
        body = {"prompt": ["a", "b", "c"], "n": 2}
        response, payload = await azure_json(live, "POST", LEGACY, body)
        self.assertEqual(response.code, 200, payload)
        self.assertAzureHeaders(response)
        validate(payload, "CreateCompletionResponse")
        self.assertEqual(payload["model"], DEPLOYMENT)
        self.assertEqual(payload["prompt_filter_results"], prompt_filters(3))
        self.assertEqual([c["index"] for c in payload["choices"]], list(range(6)))
        for choice in payload["choices"]:
            self.assertEqual(choice["content_filter_results"], FILTERS)
        _, chunks = await azure_stream(live, LEGACY, body)
        first, *rest = chunks
        self.assertEqual(first["choices"], [])
        self.assertEqual(first["prompt_filter_results"], prompt_filters(3))
        for chunk in rest:
            validate_chunk(chunk)
            self.assertEqual(chunk["choices"][0]["content_filter_results"], FILTERS)
        # Six choices interleave step by step, then six finish chunks.
        texts = "".join(c["choices"][0]["text"] for c in rest)
        self.assertEqual(texts, "o" * 6 + "k" * 6)

    async def test_embeddings_body(self) -> None:
        live = await start(self)
        path = f"/openai/deployments/embedder/embeddings?api-version={VERSION}"
        response, body = await azure_json(live, "POST", path, {"input": "hello"})
        self.assertEqual(response.code, 200, body)
        self.assertAzureHeaders(response)
        validate(body, "CreateEmbeddingResponse")
        self.assertEqual(body["model"], "embedder")
        self.assertNotIn("prompt_filter_results", body)
        response, body = await azure_json(live, "POST", path, {"input": []})
        self.assertEqual((response.code, body["error"]["param"]), (400, "input"))

    async def test_strict_models_limits_the_deployments(self) -> None:
        live = await start(self, {"strict_models": True})
        response, payload = await azure_json(
            live, "POST", CHAT, {"model": "gpt-4o", "messages": MESSAGES}
        )
        self.assertAzureError(
            response, payload, 404, "DeploymentNotFound", "does not exist"
        )
        path = f"/openai/deployments/gpt-4o/chat/completions?api-version={VERSION}"
        response, payload = await azure_json(live, "POST", path, {"messages": MESSAGES})
        self.assertEqual(response.code, 200, payload)
        self.assertEqual(payload["model"], "gpt-4o")

    async def test_api_version_is_required(self) -> None:
        live = await start(self)
        for path in (
            f"{BASE}/chat/completions",
            f"{BASE}/chat/completions?api-version=",
            f"{BASE}/chat/completions?version={VERSION}",
            f"{BASE}/completions",
        ):
            response, payload = await azure_json(
                live, "POST", path, {"messages": MESSAGES}
            )
            self.assertAzureError(
                response,
                payload,
                400,
                "BadRequest",
                "Missing required query parameter: api-version",
            )

    async def test_auth(self) -> None:
        live = await start(self, {"access_tokens": ["sk-other-token"]})
        body = {"messages": MESSAGES}
        accepted: list[dict[str, Any]] = [
            {"headers": {"api-key": TOKEN}},
            {"headers": {"api-key": "sk-other-token"}},
            {"token": TOKEN, "headers": {}},
        ]
        for kw in accepted:
            response, payload = await azure_json(live, "POST", CHAT, body, **kw)
            self.assertEqual(response.code, 200, (kw, payload))
        refused: list[tuple[dict[str, Any], str]] = [
            ({"headers": {}}, "missing subscription key"),
            ({"headers": {"api-key": ""}}, "missing subscription key"),
            ({"headers": {"api-key": "sk-wrong"}}, "invalid subscription key"),
            ({"token": "sk-wrong", "headers": {}}, "invalid subscription key"),
        ]
        for kw, text in refused:
            response, payload = await azure_json(live, "POST", CHAT, body, **kw)
            self.assertAzureError(response, payload, 401, "401", text)
        # The api-key header is the Azure tree's: /v1 still wants a bearer token.
        response, payload = await azure_json(
            live,
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": MESSAGES},
        )
        self.assertEqual(response.code, 401)
        self.assertIsNone(response.headers.getRawHeaders("apim-request-id"))
        validate(payload, "ErrorResponse")

    async def test_unknown_paths_and_methods(self) -> None:
        live = await start(self)
        for path in (
            f"{BASE}/nothing?api-version={VERSION}",
            f"{BASE}/chat/nothing?api-version={VERSION}",
            f"{BASE}?api-version={VERSION}",
            f"/openai/deployments?api-version={VERSION}",
            f"/openai/nothing?api-version={VERSION}",
            "/openai",
        ):
            response, payload = await azure_json(live, "POST", path, {})
            self.assertAzureError(response, payload, 404, "404", "Resource not found")
        response, payload = await azure_json(live, "GET", CHAT)
        self.assertEqual(response.code, 405)
        self.assertAzureHeaders(response)

    async def test_bad_bodies_name_the_param(self) -> None:
        live = await start(self)
        for path, body, param in (
            (CHAT, {"messages": []}, "messages"),
            (CHAT, {"messages": MESSAGES, "n": 0}, "n"),
            (CHAT, {"model": 5, "messages": MESSAGES}, "model"),
            (LEGACY, {}, "prompt"),
            (LEGACY, {"prompt": "x", "logprobs": 9}, "logprobs"),
            (LEGACY, {"prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ):
            response, payload = await azure_json(live, "POST", path, body)
            self.assertEqual(response.code, 400, payload)
            # Past the gateway, Azure passes OpenAI's own error body through.
            validate(payload, "ErrorResponse")
            self.assertEqual(payload["error"]["param"], param)
            self.assertAzureHeaders(response)
        response, payload = await azure_json(live, "POST", CHAT, raw=b"not json")
        self.assertEqual((response.code, payload["error"]["param"]), (400, None))


class SharedMechanismTests(AzureTestCase):
    async def test_rate_limits_and_faults_apply_under_deployments(self) -> None:
        live = await start(
            self,
            {
                "rate_limits": {"enabled": True, "requests_per_minute": 1},
                "faults": {"header": True},
            },
        )
        body = {"messages": [{"role": "user", "content": "hi"}]}
        headers = {**KEY, "x-mock-fault": "http_503"}
        response, payload = await azure_json(live, "POST", CHAT, body, headers=headers)
        self.assertEqual(response.code, 503, payload)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        response, payload = await azure_json(live, "POST", CHAT, body)
        self.assertEqual(response.code, 429, payload)
        self.assertEqual(payload["error"]["code"], "rate_limit_exceeded")
        self.assertAzureHeaders(response)
