"""Record and replay end to end: a fake provider, the official SDK, raw httpx.

The "real" upstream is a small twisted.web server written here that answers
like OpenAI with deliberate timings (``reactor.callLater``) and headers, or
a second mockai.  Recordings are made through the proxy with the SDK, the
upstream is stopped, and the same requests are replayed from the files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
import openai
import yaml

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.trial.unittest import TestCase
from twisted.web import server
from twisted.web.resource import Resource

from tests.openapi import validate
from tests.support import TOKEN, Live, events, start

KEY_ENV = "REC_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-SECRET-0f1e2d3c4b5a"
ADMIN = "admin-token-for-recordings"
PIECES = ["Hel", "lo", " from", " the", " up", "stream."]
# When each event leaves the fake upstream (ms after the request): TTFT 80,
# then 40 ms gaps; the finish chunk and [DONE] close together.
OFFSETS_MS = [80, 120, 160, 200, 240, 280, 320, 360, 365]
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def _chunk(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-up7c1d",
        "object": "chat.completion.chunk",
        "created": 1732440000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1a2b3c",
        "choices": [
            {
                "index": 0,
                "delta": dict(delta),
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


STREAM = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    *(_chunk({"content": p}) for p in PIECES),
    _chunk({}, "stop"),
    b"data: [DONE]\n\n",
]
BODY = (
    json.dumps(
        {
            "id": "chatcmpl-up9a8b",
            "object": "chat.completion",
            "created": 1732440000,
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_1a2b3c",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(PIECES),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
        },
        indent=2,
    ).encode()
    + b"\n"
)


class FakeOpenAI(Resource):
    """Answers ``POST /v1/chat/completions`` like OpenAI, on a schedule."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[dict[str, str], Any]] = []
        self.calls: list[IDelayedCall] = []
        self.hold: Deferred[None] = Deferred()
        self.finished = 0
        # Fires when a request's client (the proxy) went away unfinished.
        self.lost: Deferred[None] = Deferred()

    def render_POST(self, request: server.Request) -> int:
        body = json.loads(request.content.read())  # type: ignore[union-attr]
        headers = {
            k.decode().lower(): v[0].decode()
            for k, v in request.requestHeaders.getAllRawHeaders()
        }
        self.seen.append((headers, body))
        for name, value in (
            ("x-request-id", "req_upstream0123456789abcdef"),
            ("openai-processing-ms", "42"),
            ("openai-version", "2020-10-01"),
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "499"),
            ("set-cookie", "__cf_bm=cookie-SECRET; path=/"),
        ):
            request.setHeader(name, value)
        text = body["messages"][-1]["content"]
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))

        def lost(_: object) -> None:
            if not self.lost.called:
                self.lost.callback(None)

        request.notifyFinish().addErrback(lost)

        def later(ms: float, f: Any, *args: Any) -> None:
            self.calls.append(reactor.callLater(ms / 1000.0, guarded, f, *args))

        def guarded(f: Any, *args: Any) -> None:
            if not gone:
                f(*args)

        def done() -> None:
            self.finished += 1
            request.finish()

        if text == "never":
            return server.NOT_DONE_YET
        if not body.get("stream"):
            request.setHeader("content-type", "application/json")
            later(50, request.write, BODY)
            later(50, done)
            return server.NOT_DONE_YET
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        if text == "hold":
            # Two events, then nothing until the test releases the rest.
            request.write(STREAM[0] + STREAM[1])
            self.hold.addCallback(
                lambda _: guarded(request.write, b"".join(STREAM[2:]))
            )
            self.hold.addCallback(lambda _: guarded(done))
            return server.NOT_DONE_YET
        for at, event in zip(OFFSETS_MS, STREAM, strict=True):
            later(at, request.write, event)
        later(OFFSETS_MS[-1], done)
        return server.NOT_DONE_YET


class _Tracked(server.Site):
    """The fake's site, counting open connections so a test ends quiet."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.open: set[Any] = set()
        self.waiting: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        lost = protocol.connectionLost
        self.open.add(protocol)

        def connection_lost(reason: Any) -> None:
            self.open.discard(protocol)
            lost(reason)
            if not self.open:
                waiting, self.waiting = self.waiting, []
                for d in waiting:
                    d.callback(None)

        protocol.connectionLost = connection_lost
        return protocol

    def quiet(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self.open:
            d.callback(None)
        else:
            self.waiting.append(d)
        return d


def fake_upstream(case: TestCase) -> tuple[FakeOpenAI, IListeningPort, str]:
    fake = FakeOpenAI()
    site = _Tracked(fake)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]

    def cancel() -> None:
        for call in fake.calls:
            if call.active():
                call.cancel()

    case.addCleanup(cancel)
    case.addCleanup(port.stopListening)
    case.addCleanup(site.quiet)
    return fake, port, _fake_base(port)


def number(port: IListeningPort) -> int:
    return int(getattr(port.getHost(), "port"))  # noqa: B009


async def stop(port: IListeningPort) -> None:
    """Stop the fake upstream now (its cleanup then does nothing more)."""
    await maybeDeferred(port.stopListening)


def recordings_dir(case: TestCase) -> str:
    path = os.path.abspath(case.mktemp())
    os.makedirs(path)
    return path


async def proxy(
    case: TestCase,
    mode: str,
    directory: str,
    base_url: str | None = None,
    extra: Mapping[str, Any] | None = None,
    **recording: Any,
) -> Live:
    os.environ[KEY_ENV] = UPSTREAM_KEY
    case.addCleanup(os.environ.pop, KEY_ENV, None)
    config: dict[str, Any] = {
        "admin_token": ADMIN,
        "recording": {"mode": mode, "dir": directory, **recording},
    }
    if base_url is not None:
        config["upstream"] = {
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            "timeout_s": 5,
        }
    config.update(extra or {})
    return await start(case, config)


def stream_timed(
    url: str, body: Mapping[str, Any], token: str = TOKEN
) -> tuple[list[bytes], list[float], float]:
    """POST with raw httpx; each SSE event and when it arrived (ms after send)."""
    got: list[bytes] = []
    at: list[float] = []
    buffer = b""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as client:
        # Timed from the send: making the client (its TLS context) is not.
        t0 = time.monotonic()
        with client.stream("POST", url, json=dict(body), headers=headers) as response:
            assert response.status_code == 200, response.read()
            for data in response.iter_raw():
                now = (time.monotonic() - t0) * 1000.0
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    got.append(event + b"\n\n")
                    at.append(now)
        total = (time.monotonic() - t0) * 1000.0
    return got, at, total


def plan_seen(live: Live) -> list[tuple[float, bytes]]:
    """What the next stream is given to send: each event with the time it is
    due (seconds after the request, less what was already spent)."""
    planned: list[tuple[float, bytes]] = []
    ticker = live.server.ticker
    add = ticker.add

    def add_seen(stream: Any) -> None:
        ticker.add = add  # type: ignore[method-assign]
        planned.extend(stream.events)
        stream.events = iter(planned)
        add(stream)

    ticker.add = add_seen  # type: ignore[method-assign]
    return planned


def only_file(directory: str) -> dict[str, Any]:
    names = [n for n in os.listdir(directory) if n.endswith(".json")]
    assert len(names) == 1, names
    with open(os.path.join(directory, names[0]), encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def all_bytes(directory: str) -> bytes:
    out = b""
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            out += f.read()
    return out


class RecordReplayTests(TestCase):
    async def record_stream(
        self,
    ) -> tuple[str, FakeOpenAI, IListeningPort, list[Any], list[float]]:
        fake, port, base = fake_upstream(self)
        directory = recordings_dir(self)
        live = await proxy(self, "record", directory, base)
        client = live.sdk()

        def consume() -> tuple[list[Any], list[float]]:
            t0 = time.monotonic()
            chunks, at = [], []
            for chunk in client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ):
                chunks.append(chunk)
                at.append((time.monotonic() - t0) * 1000.0)
            return chunks, at

        chunks, at = await live.in_thread(consume)
        return directory, fake, port, chunks, at

    async def test_record_stream_then_replay_identical_events_and_timing(self) -> None:
        directory, fake, port, chunks, recorded_at = await self.record_stream()
        self.assertEqual(
            "".join(c.choices[0].delta.content or "" for c in chunks), "".join(PIECES)
        )
        # The upstream got its own key, never the client's.
        headers, _ = fake.seen[0]
        self.assertEqual(headers["authorization"], f"Bearer {UPSTREAM_KEY}")
        doc = only_file(directory)
        recorded = [e["data"].encode() for e in doc["response"]["events"]]
        self.assertEqual(recorded, STREAM)
        offsets = [e["offset_ms"] for e in doc["response"]["events"]]
        for got, sent in zip(offsets, OFFSETS_MS, strict=True):
            self.assertGreaterEqual(got, sent - 1)
            self.assertLess(got, sent + 30)
        self.assertEqual(
            doc["response"]["headers"]["x-request-id"], "req_upstream0123456789abcdef"
        )
        self.assertNotIn("set-cookie", doc["response"]["headers"])
        # The upstream is gone: replay answers from the file alone.
        await stop(port)
        live = await proxy(self, "replay", directory)
        url = live.base_url + "/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        planned = plan_seen(live)
        got, at, _total = await live.in_thread(lambda: stream_timed(url, body))
        self.assertEqual(got, STREAM)
        self.assertEqual([data for _, data in planned], STREAM)
        # Each event is due at its recorded offset, less the one span the
        # request had already spent: the same span for every event that is
        # still to wait.  Read from the plan, not timed at the client (the
        # ticker's sending on time is tests/test_delivery.py's, on a Clock):
        # a wall-clock bound on a shared machine fails when it is slow.
        due = [d for d, _ in planned]
        spent = [o / 1000.0 - d for o, d in zip(offsets, due, strict=True) if d > 0]
        self.assertGreater(len(spent), len(due) // 2, due)
        self.assertGreaterEqual(min(spent), 0.0)
        for s in spent:
            self.assertAlmostEqual(s, spent[0], 6)
        for o, d in zip(offsets, due, strict=True):
            self.assertAlmostEqual(d, max(0.0, o / 1000.0 - spent[0]), 6)
        # Never sent before it was due.
        for a, o in zip(at, offsets, strict=True):
            self.assertGreater(a, o - 2)
        # And with the SDK: the same chunks, in the same order.
        client = live.sdk()
        replayed = await live.in_thread(
            lambda: list(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True
                )
            )
        )
        self.assertEqual(
            [c.model_dump() for c in replayed], [c.model_dump() for c in chunks]
        )
        for chunk in events(b"".join(got))[:-1]:
            validate(json.loads(chunk), "CreateChatCompletionStreamResponse")
        self.assertEqual(len(recorded_at), len(chunks))

    async def test_speed_ten_replays_in_a_tenth(self) -> None:
        directory, _fake, port, _chunks, _at = await self.record_stream()
        await stop(port)
        doc = only_file(directory)
        live = await proxy(self, "replay", directory, speed=10)
        # Read from the plan, not timed at the client: a wall-clock bound on
        # a shared CI machine fails when the machine is slow, not when the
        # speed is wrong.
        planned = plan_seen(live)
        url = live.base_url + "/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        got, at, _total = await live.in_thread(lambda: stream_timed(url, body))
        self.assertEqual(got, STREAM)
        offsets = [e["offset_ms"] for e in doc["response"]["events"]]
        self.assertEqual(len(planned), len(offsets))
        # Every gap between two events is a tenth of the recorded one (the
        # first ones may be due at once: the request's own time is spent).
        due = [d for d, _ in planned]
        waited = [i for i, d in enumerate(due) if d > 0]
        self.assertGreater(len(waited), len(due) // 2, due)
        for i in range(waited[0], len(due) - 1):
            self.assertAlmostEqual(
                due[i + 1] - due[i], (offsets[i + 1] - offsets[i]) / 10000, 6
            )
        self.assertGreater(at[0], offsets[0] / 10 - 2)

    async def test_non_stream_replay_is_byte_exact_and_valid(self) -> None:
        _fake, port, base = fake_upstream(self)
        directory = recordings_dir(self)
        live = await proxy(self, "record", directory, base)
        client = live.sdk()
        completion = await live.in_thread(
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        )
        self.assertEqual(completion.choices[0].message.content, "".join(PIECES))
        await stop(port)
        live = await proxy(self, "replay", directory)
        response = await live.request(
            "POST",
            "/v1/chat/completions",
            {"messages": MESSAGES, "model": "gpt-4o-mini"},
        )
        data = await treq.content(response)
        self.assertEqual(data, BODY)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("x-request-id"),
            ["req_upstream0123456789abcdef"],
        )
        self.assertEqual(
            response.headers.getRawHeaders("x-ratelimit-limit-requests"), ["500"]
        )
        validate(json.loads(data), "CreateChatCompletionResponse")
        # Key order and whitespace do not matter; the SDK sees the same answer.
        again = await live.in_thread(
            lambda: live.sdk().chat.completions.create(
                messages=MESSAGES, model="gpt-4o-mini", user="someone-else"
            )
        )
        self.assertEqual(again.model_dump(), completion.model_dump())

    async def test_relay_starts_before_the_upstream_finishes(self) -> None:
        fake, _port, base = fake_upstream(self)
        directory = recordings_dir(self)
        live = await proxy(self, "record", directory, base)
        response = await live.request(
            "POST",
            "/v1/chat/completions",
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "hold"}],
            },
        )
        first: Deferred[bytes] = Deferred()
        parts: list[bytes] = []

        def collect(data: bytes) -> None:
            parts.append(data)
            if not first.called:
                first.callback(data)

        done = treq.collect(response, collect)
        data = await first
        # The upstream has not finished: what came is what it sent so far.
        self.assertEqual(fake.finished, 0)
        self.assertTrue(STREAM[0].startswith(data[: len(STREAM[0])]))
        self.assertEqual(os.listdir(directory), [])
        fake.hold.callback(None)
        await done
        self.assertEqual(b"".join(parts), b"".join(STREAM))
        self.assertEqual(fake.finished, 1)
        self.assertEqual(len(only_file(directory)["response"]["events"]), len(STREAM))

    async def test_a_client_gone_stops_the_upstream_and_saves_nothing(self) -> None:
        from twisted.internet.protocol import ClientFactory, Protocol

        fake, _port, base = fake_upstream(self)
        directory = recordings_dir(self)
        live = await proxy(self, "record", directory, base)
        body = json.dumps(
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "hold"}],
            }
        ).encode()
        got: Deferred[bytes] = Deferred()

        class Hasty(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )

            def dataReceived(self, data: bytes) -> None:
                if b"data: " in data and not got.called:
                    got.callback(data)
                    assert self.transport is not None
                    self.transport.loseConnection()

        factory = ClientFactory.forProtocol(Hasty)
        reactor.connectTCP("127.0.0.1", live.port, factory)  # type: ignore[arg-type]
        await got
        await fake.lost
        self.assertEqual(fake.finished, 0)
        self.assertEqual(os.listdir(directory), [])

    async def test_no_key_in_any_file(self) -> None:
        directory, _fake, _port, _c, _a = await self.record_stream()
        live = await proxy(
            self, "record", directory, _fake_base(_port), redact=["hello"]
        )
        await live.json(
            "POST",
            "/v1/chat/completions",
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "well hello"}],
            },
            headers={"Cookie": "session=COOKIE-SECRET", "X-Api-Key": UPSTREAM_KEY},
        )
        written = all_bytes(directory)
        self.assertEqual(len(os.listdir(directory)), 2)
        for secret in (UPSTREAM_KEY, TOKEN, "COOKIE-SECRET", "cookie-SECRET"):
            self.assertNotIn(secret.encode(), written, secret)
        self.assertNotIn(b"well hello", written)
        self.assertIn(b"well [redacted]", written)

    async def test_miss_is_the_documented_error(self) -> None:
        directory, _fake, port, _c, _a = await self.record_stream()
        await stop(port)
        live = await proxy(self, "replay", directory)
        client = live.sdk()
        with self.assertRaises(openai.NotFoundError) as caught:
            await live.in_thread(
                lambda: client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "Say goodbye"}],
                )
            )
        body = caught.exception.body
        assert isinstance(body, dict)
        self.assertEqual(body["code"], "recording_not_found")
        self.assertEqual(body["type"], "invalid_request_error")
        rec_id = only_file(directory)["key"]["digest"]
        self.assertIn("POST /v1/chat/completions model=gpt-4o-mini #", body["message"])
        self.assertIn(rec_id, body["message"])
        self.assertIn(
            "closest recording is chat-completions-say-hello-", body["message"]
        )
        validate({"error": body}, "ErrorResponse")

    async def test_on_miss_default_falls_through_to_the_rules(self) -> None:
        directory = recordings_dir(self)
        live = await proxy(
            self, "replay", directory, on_miss="default", extra={"replies": ["Canned."]}
        )
        _, body = await live.json(
            "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}
        )
        self.assertEqual(body["choices"][0]["message"]["content"], "Canned.")

    async def test_listing_and_promote_to_a_rule_answering_the_same_text(self) -> None:
        directory, _fake, port, _c, _a = await self.record_stream()
        await stop(port)
        live = await proxy(self, "replay", directory)
        admin = {"token": ADMIN}
        replayed = await live.request(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        )
        self.assertEqual(await treq.content(replayed), b"".join(STREAM))
        _, listing = await live.json("GET", "/_mock/recordings", **admin)
        (entry,) = listing["recordings"]
        self.assertEqual(entry["hits"], 1)
        self.assertTrue(entry["file"].startswith(directory))
        self.assertIn("POST /v1/chat/completions", entry["key"])
        response, promoted = await live.json(
            "POST", f"/_mock/recordings/{entry['id']}/promote", **admin
        )
        self.assertEqual(response.code, 200)
        (rule,) = yaml.safe_load(promoted["yaml"])
        self.assertEqual(rule["answer"], {"text": "".join(PIECES)})
        # The rule, in a plain mock: the same text.
        plain = await start(self, {"rules": [rule]})
        _, body = await plain.json(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": MESSAGES},
        )
        self.assertEqual(body["choices"][0]["message"]["content"], "".join(PIECES))
        missing, _ = await live.json("POST", "/_mock/recordings/nope/promote", **admin)
        self.assertEqual(missing.code, 404)

    async def test_upstream_refused_and_timeout(self) -> None:
        fake, port, base = fake_upstream(self)
        directory = recordings_dir(self)
        live = await proxy(self, "record", directory, base)
        live.server.apply(_with_timeout(live.server.config, 0.3))
        response, body = await live.json(
            "POST",
            "/v1/chat/completions",
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "never"}],
            },
        )
        self.assertEqual(response.code, 504)
        self.assertEqual(body["error"]["code"], "upstream_timeout")
        await stop(port)
        response, body = await live.json(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": MESSAGES},
        )
        self.assertEqual(response.code, 502)
        self.assertEqual(body["error"]["code"], "upstream_unreachable")
        validate(body, "ErrorResponse")
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(len(fake.seen), 1)


def _fake_base(port: IListeningPort) -> str:
    return f"http://127.0.0.1:{number(port)}/v1"


def _with_timeout(config: Any, seconds: float) -> Any:
    import dataclasses

    upstream = dataclasses.replace(config.upstream, timeout_s=seconds)
    return dataclasses.replace(config, upstream=upstream)


class ConfigLifeTests(TestCase):
    async def test_tls_is_verified(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from tests.test_tls import make_certs, ssl_listen

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        certs = make_certs(directory)
        site = _Tracked(FakeOpenAI())
        port = await serverFromString(reactor, ssl_listen(certs)).listen(site)
        self.addCleanup(port.stopListening)
        self.addCleanup(site.quiet)
        base = f"https://127.0.0.1:{number(port)}/v1"
        live = await proxy(self, "record", recordings_dir(self), base)
        response, body = await live.json(
            "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}
        )
        # The test CA is no CA the proxy trusts: refused, nothing sent.
        self.assertEqual(response.code, 502)
        self.assertEqual(body["error"]["code"], "upstream_tls_error")
        self.assertEqual(site.resource.seen, [])

    async def test_a_broken_recording_refuses_the_reload_and_the_old_stay(self) -> None:
        directory, _fake, port, _c, _a = await RecordReplayTests.record_stream(self)  # type: ignore[arg-type]
        await stop(port)
        live = await proxy(self, "replay", directory)
        bad = os.path.join(directory, "broken-000000000000-001.json")
        with open(bad, "w", encoding="utf-8") as f:
            f.write('{"mockai_recording": 1, "request": []}')
        response, body = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 400)
        self.assertIn(bad, body["error"]["message"])
        self.assertIn("request: must be a mapping", body["error"]["message"])
        replayed = await live.request(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        )
        self.assertEqual(await treq.content(replayed), b"".join(STREAM))
        os.unlink(bad)
        _, listing = await live.json("GET", "/_mock/recordings", token=ADMIN)
        self.assertEqual(listing["recordings"][0]["hits"], 1)
        response, _ = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 200)
