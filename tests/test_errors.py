"""Every bad input gets OpenAI's error body and status; the server keeps serving."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from mockai_tw.errors import ApiError
from tests.openapi import validate
from tests.support import TOKEN, Live, start

CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class ErrorTests(TestCase):
    async def check(
        self,
        live: Live,
        method: str,
        path: str,
        body: Any = None,
        *,
        status: int,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        contains: str = "",
        **kw: Any,
    ) -> dict[str, Any]:
        response, payload = await live.json(method, path, body, **kw)
        self.assertEqual(response.code, status, payload)
        validate(payload, "ErrorResponse")
        error = payload["error"]
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        self.assertEqual(
            (error["type"], error["param"], error["code"]), (type, param, code)
        )
        self.assertIn(contains, error["message"])
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        # ...and the server still answers a good request.
        ok, _ = await live.json("POST", CHAT, GOOD)
        self.assertEqual(ok.code, 200)
        return error

    async def test_auth(self) -> None:
        live = await start(self, {"access_tokens": ["sk-second-token"]})
        await self.check(
            live,
            "POST",
            CHAT,
            GOOD,
            token=None,
            status=401,
            contains="didn't provide an API key",
        )
        await self.check(
            live,
            "POST",
            CHAT,
            GOOD,
            token="sk-wrong-key-9999",
            status=401,
            code="invalid_api_key",
            contains="sk-**********9999",
        )
        await self.check(
            live, "GET", "/v1/nothing", token="nope", status=401, code="invalid_api_key"
        )
        await self.check(
            live,
            "POST",
            CHAT,
            GOOD,
            token=None,
            status=401,
            headers={"Authorization": f"Basic {TOKEN}"},
        )
        response, _ = await live.json("POST", CHAT, GOOD, token="sk-second-token")
        self.assertEqual(response.code, 200)

    async def test_any_token(self) -> None:
        live = await start(self, {"accept_any_token": True, "access_token": None})
        response, _ = await live.json("POST", CHAT, GOOD, token="sk-anything")
        self.assertEqual(response.code, 200)
        await self.check(live, "POST", CHAT, GOOD, token=None, status=401)

    async def test_health_needs_no_token(self) -> None:
        live = await start(self)
        response, body = await live.json("GET", "/health", token=None)
        self.assertEqual(response.code, 200)
        self.assertEqual(body["status"], "ok")
        head = await live.request("HEAD", "/health", token=None)
        self.assertEqual(head.code, 200)

    async def test_routes(self) -> None:
        live = await start(self)
        await self.check(
            live,
            "POST",
            "/v1/nothing",
            {},
            status=404,
            contains="Invalid URL (POST /v1/nothing)",
        )
        await self.check(
            live, "GET", "/nope", status=404, contains="Invalid URL (GET /nope)"
        )
        await self.check(live, "GET", "/v1/chat", status=404)
        await self.check(live, "GET", "/v1/chat/completions/extra/more", status=404)
        # GET lists stored completions (tests/test_stored_completions.py).
        error = await self.check(
            live, "PUT", CHAT, status=405, code="method_not_allowed"
        )
        self.assertIn("POST", error["message"])
        await self.check(live, "DELETE", CHAT, status=405, code="method_not_allowed")
        await self.check(
            live, "POST", "/health", status=405, code="method_not_allowed", token=None
        )

    async def test_body_not_json_or_not_object(self) -> None:
        live = await start(self)
        await self.check(
            live,
            "POST",
            CHAT,
            raw=b"{nope",
            status=400,
            contains="could not parse the JSON body",
        )
        await self.check(
            live,
            "POST",
            CHAT,
            raw=b"",
            status=400,
            contains="could not parse the JSON body",
        )
        await self.check(live, "POST", CHAT, raw=b"\xff\xfe", status=400)
        await self.check(
            live,
            "POST",
            CHAT,
            [GOOD],
            status=400,
            code="invalid_type",
            contains="expected an object",
        )
        await self.check(live, "POST", CHAT, "text", status=400, code="invalid_type")

    async def test_messages(self) -> None:
        live = await start(self)
        cases: list[tuple[Any, str, str | None]] = [
            ({"model": "gpt-4o"}, "messages", "missing_required_parameter"),
            ({"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
            ({"model": "gpt-4o", "messages": "hi"}, "messages", "invalid_type"),
            ({"model": "gpt-4o", "messages": ["hi"]}, "messages[0]", "invalid_type"),
            (
                {"model": "gpt-4o", "messages": [{"content": "x"}]},
                "messages[0].role",
                "missing_required_parameter",
            ),
            (
                {"model": "gpt-4o", "messages": [{"role": "bot", "content": "x"}]},
                "messages[0].role",
                "invalid_value",
            ),
            (
                {"model": "gpt-4o", "messages": [{"role": "user"}]},
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                {"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
                "messages[0].content",
                "invalid_type",
            ),
            (
                {
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": [{"type": "text"}]}],
                },
                "messages[0].content[0].text",
                "missing_required_parameter",
            ),
            (
                {
                    "model": "gpt-4o",
                    "messages": [GOOD["messages"][0], {"role": "tool", "content": "r"}],
                },
                "messages[1].tool_call_id",
                "missing_required_parameter",
            ),
        ]
        for body, param, code in cases:
            await self.check(
                live, "POST", CHAT, body, status=400, param=param, code=code
            )

    async def test_model_and_field_types(self) -> None:
        live = await start(self)
        await self.check(
            live,
            "POST",
            CHAT,
            {"messages": GOOD["messages"]},
            status=400,
            param="model",
            contains="model",
        )
        cases: list[tuple[str, Any, str]] = [
            ("model", 4, "invalid_type"),
            ("stream", "yes", "invalid_type"),
            ("temperature", "hot", "invalid_type"),
            ("temperature", 3, "invalid_value"),
            ("n", 1.5, "invalid_type"),
            ("n", 0, "integer_below_min_value"),
            ("max_tokens", "ten", "invalid_type"),
            ("stop", 5, "invalid_type"),
            ("stop", ["a", "b", "c", "d", "e"], "array_above_max_length"),
            ("tools", {"a": 1}, "invalid_type"),
            ("user", 1, "invalid_type"),
            ("stream_options", "x", "invalid_type"),
        ]
        for key, value, code in cases:
            body = {**GOOD, key: value}
            if key == "stream_options":
                body["stream"] = True
            await self.check(live, "POST", CHAT, body, status=400, param=key, code=code)
        await self.check(
            live,
            "POST",
            CHAT,
            {**GOOD, "stream_options": {"include_usage": True}},
            status=400,
            param="stream_options",
        )

    async def test_body_too_large(self) -> None:
        live = await start(self, {"http": {"max_body_bytes": 2048}})
        big = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
        await self.check(live, "POST", CHAT, big, status=413, code="request_too_large")
        self.assertEqual(live.server.site.max_body_bytes(), 2048)

    async def test_internal_error_is_an_error_body(self) -> None:
        live = await start(self)
        engine = live.server.engine

        def broken(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("engine bug")

        engine.chat = broken  # type: ignore[method-assign]
        response, payload = await live.json("POST", CHAT, GOOD)
        # First, so that the logged error is flushed whatever fails after.
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(response.code, 500)
        validate(payload, "ErrorResponse")
        self.assertEqual(payload["error"]["type"], "server_error")
        self.assertNotIn("engine bug", payload["error"]["message"])

        def refuse(*args: Any, **kw: Any) -> Any:
            raise ApiError(
                503,
                "That model is currently overloaded with other requests.",
                type="server_error",
            )

        engine.chat = refuse  # type: ignore[method-assign]
        response, payload = await live.json("POST", CHAT, GOOD)
        self.assertEqual(response.code, 503)
        self.assertEqual(payload["error"]["type"], "server_error")
