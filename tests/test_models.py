"""``/v1/models`` and ``strict_models``, on a live listener and through the SDK."""

from __future__ import annotations

from typing import Any

import openai

from twisted.trial.unittest import TestCase

from mockai_tw.config import DEFAULT_MODELS, ConfigError
from mockai_tw.config_load import parse_config
from mockai_tw.engine.models import check_model, describe
from mockai_tw.errors import ApiError
from tests.openapi import validate
from tests.support import Live, start

FINE_TUNED = "ft:gpt-4o-mini:acme::abc123"
MODELS = [*DEFAULT_MODELS, FINE_TUNED, "meta/llama-3.1-8b"]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def expect_error(
    case: TestCase,
    live: Live,
    method: str,
    path: str,
    body: Any = None,
    *,
    status: int,
    param: str | None,
    code: str | None = None,
) -> dict[str, Any]:
    """The request fails with OpenAI's error body, naming ``param``."""
    response, payload = await live.json(method, path, body)
    case.assertEqual(response.code, status, payload)
    validate(payload, "ErrorResponse")
    error: dict[str, Any] = payload["error"]
    case.assertEqual(error["type"], "invalid_request_error")
    case.assertEqual((error["param"], error["code"]), (param, code), error)
    return error


class ListTests(TestCase):
    async def test_list(self) -> None:
        live = await start(self, {"models": MODELS})
        response, body = await live.json("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        validate(body, "ListModelsResponse")
        self.assertEqual(body["object"], "list")
        self.assertEqual([m["id"] for m in body["data"]], MODELS)
        for model in body["data"]:
            validate(model, "Model")
            self.assertEqual(model["object"], "model")
            self.assertIsInstance(model["created"], int)
            self.assertGreater(model["created"], 1_600_000_000)
        by_id = {m["id"]: m for m in body["data"]}
        self.assertEqual(by_id["gpt-4o"]["owned_by"], "system")
        self.assertEqual(by_id["gpt-3.5-turbo"]["owned_by"], "openai")
        self.assertEqual(by_id[FINE_TUNED]["owned_by"], "acme")
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        # A trailing slash is the same listing.
        _, again = await live.json("GET", "/v1/models/")
        self.assertEqual(again, body)

    async def test_listing_is_stable_and_follows_a_config_swap(self) -> None:
        live = await start(self, {"models": ["gpt-4o", "gpt-4o", "x-1"]})
        _, first = await live.json("GET", "/v1/models")
        _, second = await live.json("GET", "/v1/models")
        self.assertEqual(first, second)
        self.assertEqual([m["id"] for m in first["data"]], ["gpt-4o", "x-1"])
        live.server.apply(
            parse_config({"access_token": "t", "models": ["only-one"]}, {})
        )
        _, swapped = await live.json("GET", "/v1/models", token="t")
        self.assertEqual([m["id"] for m in swapped["data"]], ["only-one"])
        response, _ = await live.json("GET", "/v1/models/gpt-4o", token="t")
        self.assertEqual(response.code, 404)

    async def test_retrieve(self) -> None:
        live = await start(self, {"models": MODELS})
        for model_id, path in (
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("gpt-4.1", "gpt-4.1"),
            (FINE_TUNED, FINE_TUNED),
            (FINE_TUNED, FINE_TUNED.replace(":", "%3A")),
            ("meta/llama-3.1-8b", "meta%2Fllama-3.1-8b"),
            ("meta/llama-3.1-8b", "meta/llama-3.1-8b"),
        ):
            response, body = await live.json("GET", f"/v1/models/{path}")
            self.assertEqual(response.code, 200, (path, body))
            validate(body, "Model")
            self.assertEqual(body["id"], model_id)
            _, listing = await live.json("GET", "/v1/models")
            self.assertIn(body, listing["data"])

    async def test_unknown_model(self) -> None:
        live = await start(self)
        error = await expect_error(
            self,
            live,
            "GET",
            "/v1/models/gpt-9",
            status=404,
            param=None,
            code="model_not_found",
        )
        self.assertEqual(
            error["message"],
            "The model 'gpt-9' does not exist or you do not have access to it.",
        )

    async def test_methods(self) -> None:
        live = await start(self)
        response, body = await live.json("POST", "/v1/models", {})
        self.assertEqual(response.code, 405)
        validate(body, "ErrorResponse")
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET"])
        response, body = await live.json("DELETE", "/v1/models/gpt-4o")
        self.assertEqual(response.code, 405)
        response, _ = await live.json("GET", "/v1/models", token=None)
        self.assertEqual(response.code, 401)


class SdkTests(TestCase):
    async def test_list_and_retrieve(self) -> None:
        live = await start(self, {"models": MODELS})
        client = live.sdk()
        page = await live.in_thread(client.models.list)
        self.assertEqual([m.id for m in page], MODELS)
        model = await live.in_thread(lambda: client.models.retrieve("gpt-4o"))
        self.assertEqual(model.id, "gpt-4o")
        self.assertEqual(model.object, "model")
        self.assertEqual(model.owned_by, "system")
        fine = await live.in_thread(lambda: client.models.retrieve(FINE_TUNED))
        self.assertEqual(fine.id, FINE_TUNED)
        slashed = await live.in_thread(
            lambda: client.models.retrieve("meta/llama-3.1-8b")
        )
        self.assertEqual(slashed.id, "meta/llama-3.1-8b")

    async def test_retrieve_unknown(self) -> None:
        live = await start(self)
        client = live.sdk()
        with self.assertRaises(openai.NotFoundError) as caught:
            await live.in_thread(lambda: client.models.retrieve("nope"))
        self.assertEqual(caught.exception.code, "model_not_found")


class StrictModelsTests(TestCase):
    async def test_off_by_default(self) -> None:
        live = await start(self)
        response, _ = await live.json(
            "POST", "/v1/chat/completions", {**CHAT, "model": "my-own-model"}
        )
        self.assertEqual(response.code, 200)
        response, _ = await live.json(
            "POST", "/v1/embeddings", {"model": "my-embedder", "input": "hi"}
        )
        self.assertEqual(response.code, 200)

    async def test_strict_refuses_unknown_models_everywhere(self) -> None:
        live = await start(self, {"strict_models": True})
        for path, body in (
            ("/v1/chat/completions", {**CHAT, "model": "gpt-9"}),
            ("/v1/chat/completions", {**CHAT, "model": "gpt-9", "stream": True}),
            ("/v1/embeddings", {"model": "gpt-9", "input": "hi"}),
            ("/v1/moderations", {"model": "gpt-9", "input": "hi"}),
        ):
            error = await expect_error(
                self,
                live,
                "POST",
                path,
                body,
                status=404,
                param=None,
                code="model_not_found",
            )
            self.assertIn("'gpt-9' does not exist", error["message"])
        for path, body in (
            ("/v1/chat/completions", {**CHAT, "model": "gpt-4o"}),
            ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
            ("/v1/moderations", {"input": "hi"}),
        ):
            response, payload = await live.json("POST", path, body)
            self.assertEqual(response.code, 200, payload)

    async def test_strict_through_the_sdk(self) -> None:
        live = await start(self, {"strict_models": True})
        client = live.sdk()
        with self.assertRaises(openai.NotFoundError) as caught:
            await live.in_thread(
                lambda: client.embeddings.create(model="ada-3000", input="x")
            )
        self.assertEqual(caught.exception.code, "model_not_found")


class EngineTests(TestCase):
    def test_describe_is_fixed(self) -> None:
        self.assertEqual(describe("some-model"), describe("some-model"))
        self.assertNotEqual(describe("a").created, describe("b").created)
        self.assertEqual(describe("gpt-4").owned_by, "openai")
        self.assertEqual(describe("ft:gpt-4o::x:y").owned_by, "system")

    def test_check_model(self) -> None:
        loose = parse_config({"access_token": "t"}, {})
        check_model(loose, "anything")
        strict = parse_config(
            {"access_token": "t", "strict_models": True, "models": ["m"]}, {}
        )
        check_model(strict, "m")
        with self.assertRaises(ApiError) as caught:
            check_model(strict, "n")
        self.assertEqual(
            (caught.exception.status, caught.exception.code), (404, "model_not_found")
        )

    def test_config(self) -> None:
        config = parse_config({"access_token": "t"}, {"MOCKAI_STRICT_MODELS": "true"})
        self.assertTrue(config.strict_models)
        self.assertFalse(parse_config({"access_token": "t"}, {}).strict_models)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", "strict_models": "yes"}, {})
        self.assertEqual(
            str(caught.exception),
            "strict_models: must be a boolean (true/false), got the string 'yes'",
        )
