"""Record and replay against a second mockai as the upstream.

Every provider and endpoint the mock serves can be recorded through another
mock: Responses (``event:`` lines), legacy completions, embeddings,
Anthropic and Gemini framing, Azure routes.  The replaying server has no
upstream at all, so nothing can be forwarded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from tests.openapi import validate
from tests.support import TOKEN, Live, start
from tests.test_recording import ADMIN, KEY_ENV, proxy, recordings_dir

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me"}]


async def upstream_mock(case: TestCase, extra: Mapping[str, Any] | None = None) -> Live:
    """A second mockai, paced, accepting the upstream key the proxy sends."""
    from tests.test_recording import UPSTREAM_KEY

    config: dict[str, Any] = {
        "access_tokens": [UPSTREAM_KEY],
        "replies": ["Recorded words from the other mock."],
        "stream": {"interval_ms": 15, "chunking": "word"},
        "admin_token": ADMIN,
    }
    config.update(extra or {})
    return await start(case, config)


async def raw(live: Live, path: str, body: Any, **kw: Any) -> tuple[int, bytes, Any]:
    response = await live.request("POST", path, body, **kw)
    return response.code, await treq.content(response), response.headers


class MockUpstreamTests(TestCase):
    async def record_then_replay(
        self,
        requests: list[tuple[str, Any, Mapping[str, str]]],
        upstream: Mapping[str, Any] | None = None,
        base_suffix: str = "/v1",
        **replaying: Any,
    ) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes, Any]], str, Live]:
        up = await upstream_mock(self, upstream)
        directory = recordings_dir(self)
        recorder = await proxy(self, "record", directory, up.root + base_suffix)
        recorded = []
        for path, body, headers in requests:
            code, data, _ = await raw(recorder, path, body, headers=headers)
            recorded.append((code, data))
        # The replaying server knows no upstream: nothing can be forwarded.
        replayer = await proxy(self, "replay", directory, **replaying)
        replayed = [
            await raw(replayer, path, body, headers=headers)
            for path, body, headers in requests
        ]
        return recorded, replayed, directory, replayer

    async def test_every_openai_endpoint_replays_byte_exact(self) -> None:
        requests: list[tuple[str, Any, Mapping[str, str]]] = [
            ("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}, {}),
            (
                "/v1/chat/completions",
                {"model": "gpt-4o", "messages": MESSAGES, "stream": True},
                {},
            ),
            (
                "/v1/responses",
                {"model": "gpt-4o", "input": "Tell me", "stream": True},
                {},
            ),
            ("/v1/responses", {"model": "gpt-4o", "input": "Tell me"}, {}),
            (
                "/v1/completions",
                {"model": "gpt-3.5-turbo-instruct", "prompt": "Tell", "stream": True},
                {},
            ),
            (
                "/v1/embeddings",
                {"model": "text-embedding-3-small", "input": "vector me"},
                {},
            ),
            ("/v1/moderations", {"input": "a kind word"}, {}),
        ]
        recorded, replayed, directory, _ = await self.record_then_replay(requests)
        self.assertEqual(len(os.listdir(directory)), len(requests))
        for (code, data), (rcode, rdata, _headers) in zip(
            recorded, replayed, strict=True
        ):
            self.assertEqual(code, 200, data[:200])
            self.assertEqual((rcode, rdata), (code, data))
        # The Responses stream kept its ``event:`` lines exactly.
        self.assertIn(b"event: response.created\ndata: {", replayed[2][1])
        self.assertFalse(replayed[2][1].endswith(b"[DONE]\n\n"))
        validate(json.loads(replayed[0][1]), "CreateChatCompletionResponse")
        validate(json.loads(replayed[3][1]), "Response")
        validate(json.loads(replayed[5][1]), "CreateEmbeddingResponse")
        validate(json.loads(replayed[6][1]), "CreateModerationResponse")

    async def test_anthropic_gemini_and_azure_routes(self) -> None:
        anthropic = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
        requests: list[tuple[str, Any, Mapping[str, str]]] = [
            (
                "/v1/messages",
                {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 64,
                    "messages": MESSAGES,
                    "stream": True,
                },
                anthropic,
            ),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                {"contents": [{"role": "user", "parts": [{"text": "Tell me"}]}]},
                {"x-goog-api-key": TOKEN},
            ),
            (
                "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                {"messages": MESSAGES, "stream": True},
                {"api-key": TOKEN},
            ),
        ]
        recorded, replayed, _directory, _ = await self.record_then_replay(
            requests, base_suffix=""
        )
        for (code, data), (rcode, rdata, _h) in zip(recorded, replayed, strict=True):
            self.assertEqual(code, 200, data[:300])
            self.assertEqual((rcode, rdata), (code, data))
        self.assertIn(b"event: message_start\ndata: {", replayed[0][1])
        self.assertIn(b"candidates", replayed[1][1])
        self.assertIn(b"prompt_filter_results", replayed[2][1])

    async def test_identical_keys_play_in_order_then_the_last_repeats(self) -> None:
        rule = {"answer": {"sequence": ["First.", "Second."]}}
        body = {"model": "gpt-4o", "messages": MESSAGES}
        requests: list[tuple[str, Any, Mapping[str, str]]] = [
            ("/v1/chat/completions", body, {}),
            ("/v1/chat/completions", body, {}),
        ]
        _recorded, replayed, directory, replayer = await self.record_then_replay(
            requests, {"rules": [rule]}
        )
        texts = [
            json.loads(d)["choices"][0]["message"]["content"] for _, d, _ in replayed
        ]
        self.assertEqual(texts, ["First.", "Second."])
        _, third, _ = await raw(replayer, "/v1/chat/completions", body)
        self.assertEqual(
            json.loads(third)["choices"][0]["message"]["content"], "Second."
        )
        names = sorted(os.listdir(directory))
        self.assertEqual([n.rsplit("-", 1)[1] for n in names], ["001.json", "002.json"])
        _, listing = await replayer.json("GET", "/_mock/recordings", token=ADMIN)
        self.assertEqual([r["hits"] for r in listing["recordings"]], [1, 2])

    async def test_fresh_ids_are_new_and_consistent_within_a_stream(self) -> None:
        body = {"model": "gpt-4o", "input": "Tell me", "stream": True}
        requests: list[tuple[str, Any, Mapping[str, str]]] = [
            ("/v1/responses", body, {})
        ]
        recorded, replayed, _d, replayer = await self.record_then_replay(
            requests, fresh_ids=True
        )
        old, new = recorded[0][1], replayed[0][1]

        def ids(data: bytes) -> list[str]:
            out = []
            for block in data.split(b"\n\n"):
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        out.append(event.get("response", {}).get("id") or "")
            return [i for i in out if i]

        self.assertNotEqual(ids(old), ids(new))
        self.assertEqual(len(set(ids(new))), 1)
        self.assertTrue(ids(new)[0].startswith("resp_"))
        self.assertEqual(len(ids(new)[0]), len(ids(old)[0]))
        self.assertEqual(len(old), len(new))
        _, again, _ = await raw(replayer, "/v1/responses", body)
        self.assertNotEqual(ids(again)[0], ids(new)[0])

    async def test_faults_and_rate_limits_apply_on_top_of_replay(self) -> None:
        body = {"model": "gpt-4o", "messages": MESSAGES}
        requests: list[tuple[str, Any, Mapping[str, str]]] = [
            ("/v1/chat/completions", body, {})
        ]
        _rec, _rep, directory, _ = await self.record_then_replay(requests)
        limited = await proxy(
            self,
            "replay",
            directory,
            extra={
                "faults": {"header": True},
                "rate_limits": {"enabled": True, "requests_per_minute": 2},
            },
        )
        code, data, _ = await raw(
            limited, "/v1/chat/completions", body, headers={"x-mock-fault": "http_503"}
        )
        self.assertEqual(code, 503, data)
        code, _data, _ = await raw(limited, "/v1/chat/completions", body)
        self.assertEqual(code, 200)
        code, data, _headers = await raw(limited, "/v1/chat/completions", body)
        self.assertEqual(code, 429, data)
        self.assertEqual(json.loads(data)["error"]["code"], "rate_limit_exceeded")

    async def test_replay_or_record_and_passthrough(self) -> None:
        up = await upstream_mock(self)
        directory = recordings_dir(self)
        live = await proxy(self, "replay_or_record", directory, up.root + "/v1")
        body = {"model": "gpt-4o", "messages": MESSAGES}
        _, first, _ = await raw(live, "/v1/chat/completions", body)
        _, second, _ = await raw(live, "/v1/chat/completions", body)
        self.assertEqual(first, second)
        _, journal = await up.json("GET", "/_mock/requests", token=ADMIN)
        self.assertEqual(len(journal["requests"]), 1)  # the second was a replay
        self.assertEqual(len(os.listdir(directory)), 1)
        other = recordings_dir(self)
        passing = await proxy(self, "passthrough", other, up.root + "/v1")
        code, _data, _ = await raw(passing, "/v1/chat/completions", body)
        self.assertEqual(code, 200)
        self.assertEqual(os.listdir(other), [])
        _, mine = await passing.json("GET", "/_mock/requests", token=ADMIN)
        (entry,) = mine["requests"]
        self.assertEqual(
            (entry["status"], entry["path"]), (200, "/v1/chat/completions")
        )
        self.assertEqual(entry["headers"]["authorization"], "[redacted]")
        _, journal = await up.json("GET", "/_mock/requests", token=ADMIN)
        self.assertEqual(len(journal["requests"]), 2)
        # The upstream's own errors are relayed (and recorded) as they are.
        code, data, _ = await raw(live, "/v1/chat/completions", {"model": "gpt-4o"})
        self.assertEqual(code, 400)
        self.assertEqual(json.loads(data)["error"]["param"], "messages")
        self.assertEqual(len(os.listdir(directory)), 2)

    async def test_a_bad_json_body_in_replay_is_the_usual_400(self) -> None:
        live = await proxy(self, "replay", recordings_dir(self))
        code, data, _ = await raw(live, "/v1/chat/completions", None, raw=b"{nope")
        self.assertEqual(code, 400)
        self.assertIn(
            "could not parse the JSON body", json.loads(data)["error"]["message"]
        )
        self.assertEqual(KEY_ENV in os.environ, True)
