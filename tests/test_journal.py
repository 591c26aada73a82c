"""The request journal: a bounded ring, filters, redaction -- pure, then live."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

import treq
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from mockai_tw.engine.plan import (
    CallOutput,
    ChatPlan,
    ChoicePlan,
    MessageOutput,
    TokenCount,
    ToolCallPlan,
    Usage,
)
from mockai_tw.errors import ApiError
from mockai_tw.journal import (
    _TAILS,
    MAX_BODY_BYTES,
    REDACTED,
    Answer,
    Entry,
    HeaderMap,
    Journal,
    compact_reply,
    redacted,
    unpack,
)
from tests.support import TOKEN, start

ADMIN = "adm-0123456789"
CHAT = "/v1/chat/completions"


def headers(**values: str) -> Headers:
    return Headers({k.replace("_", "-"): [v] for k, v in values.items()})


def plan(text: str = "hi", rule: str | None = None) -> ChatPlan:
    return ChatPlan(
        id="chatcmpl-1",
        created=0,
        model="gpt-4o",
        system_fingerprint="fp",
        choices=(ChoicePlan(0, (text,), "stop"),),
        usage=Usage(5, 1),
        rule=rule,
    )


class PureJournalTests(TestCase):
    def test_header_map_is_lower_cased_and_redacted(self) -> None:
        raw = headers(Authorization="Bearer sk-secret", Api_Key="k", X_Trace="t")
        view = HeaderMap(raw)
        self.assertEqual(view["authorization"], "Bearer sk-secret")
        self.assertEqual(view["X-Trace"], "t")
        self.assertNotIn("x-missing", view)
        self.assertEqual(
            redacted(view),
            {"authorization": REDACTED, "api-key": REDACTED, "x-trace": "t"},
        )

    def test_ring_is_bounded_and_newest_last(self) -> None:
        journal = Journal(size=3)
        for i in range(5):
            journal.record(float(i), b"POST", CHAT.encode(), headers(), b"{}", 200)
        self.assertEqual([r["id"] for r in journal.query()], [3, 4, 5])
        self.assertEqual([r["id"] for r in journal.query(limit=2)], [4, 5])
        self.assertEqual([r["id"] for r in journal.query(since=4.0)], [5])
        journal.configure(size=2, enabled=True, max_bytes=journal.max_bytes)
        self.assertEqual([r["id"] for r in journal.query()], [4, 5])
        self.assertEqual(journal.clear(), 2)
        self.assertEqual(journal.query(), [])

    def test_filters_and_summary(self) -> None:
        journal = Journal()
        body = b'{"model": "gpt-4o", "messages": []}'
        journal.record(
            1.0, b"POST", CHAT.encode(), headers(), body, 200, plan("a", "r1")
        )
        journal.record(2.0, b"POST", CHAT.encode(), headers(), body, 200, plan("b"))
        journal.record(
            3.0,
            b"POST",
            b"/v1/embeddings?x=1",
            headers(),
            b'{"model": "text-embedding-3-small"}',
            400,
            error=ApiError(400, "bad", param="input"),
        )
        self.assertEqual(
            [r["rule"] for r in journal.query(path=CHAT)], ["r1", "default"]
        )
        self.assertEqual([r["id"] for r in journal.query(path="/v1/*")], [1, 2, 3])
        self.assertEqual([r["id"] for r in journal.query(model="text-*")], [3])
        self.assertEqual([r["id"] for r in journal.query(rule="r1")], [1])
        first = journal.query(rule="r1")[0]
        self.assertEqual(first["reply"]["text"], "a")
        self.assertEqual(first["reply"]["usage"]["total_tokens"], 6)
        self.assertEqual(first["body"], {"model": "gpt-4o", "messages": []})
        last = journal.query()[-1]
        self.assertEqual((last["path"], last["query"]), ("/v1/embeddings", "x=1"))
        self.assertEqual(last["error"]["param"], "input")
        self.assertIsNone(last["reply"])

    def test_a_record_is_one_bytes_and_reads_back_whole(self) -> None:
        raw = Headers({"X-Trace": ["a", "b"], "Authorization": ["Bearer sk-x"]})
        journal = Journal()
        journal.record(
            7.5,
            b"POST",
            b"/v1/chat/completions?q=1",
            raw,
            b'{"model": "gpt-4o"}',
            200,
            plan("h\u00e9llo\nworld", "r\u00e9gle"),
            fault="trickle",
        )
        journal.record(8.0, b"POST", CHAT.encode(), Headers(), None, 404)
        self.assertEqual([type(r) for r in journal.ring], [bytes, bytes])
        first, second = journal.query()
        self.assertEqual(
            first["headers"], {"x-trace": "a, b", "authorization": REDACTED}
        )
        self.assertEqual((first["time"], first["status"]), (7.5, 200))
        self.assertEqual((first["rule"], first["model"]), ("r\u00e9gle", "gpt-4o"))
        self.assertEqual(first["reply"]["text"], "h\u00e9llo\nworld")
        self.assertEqual(first["reply"]["fault"], "trickle")
        self.assertEqual(first["query"], "q=1")
        self.assertEqual(
            (second["headers"], second["body"], second["rule"], second["reply"]),
            ({}, None, None, None),
        )

    def test_huge_bodies_are_kept_as_their_size(self) -> None:
        journal = Journal()
        big = b"x" * (MAX_BODY_BYTES + 1)
        journal.record(0.0, b"POST", CHAT.encode(), headers(), big, 413)
        (record,) = journal.query()
        self.assertEqual(record["body"], {"truncated": True, "bytes": len(big)})
        self.assertLess(len(journal.ring[0]), 1024)

    def test_bytes_are_bounded_too(self) -> None:
        journal = Journal(size=1000, max_bytes=64 * 1024)
        body = b'{"input": "' + b"x" * 10_000 + b'"}'
        for i in range(20):
            journal.record(float(i), b"POST", CHAT.encode(), headers(), body, 200)
        # Six 10 kB records fit in 64 kB: the newest six are kept, newest last.
        self.assertEqual([r["id"] for r in journal.query()], list(range(15, 21)))
        self.assertEqual(journal.held, sum(len(r) for r in journal.ring))
        self.assertLessEqual(journal.held, journal.max_bytes)
        # A body over a quarter of the budget is kept as its size only.
        journal.record(20.0, b"POST", CHAT.encode(), headers(), b"y" * 20_000, 200)
        self.assertEqual(journal.query(limit=1)[0]["body"]["bytes"], 20_000)
        # Shrinking the budget on reload drops the oldest at once.
        journal.configure(size=1000, enabled=True, max_bytes=15_000)
        self.assertEqual([r["id"] for r in journal.query()], [20, 21])
        journal.clear()
        self.assertEqual((len(journal), journal.held), (0, 0))

    def test_tool_calls_in_the_summary(self) -> None:
        call = ToolCallPlan("call_1", "lookup", '{"id": 1}', ('{"id": 1}',))
        choice = ChoicePlan(0, (), "tool_calls", tool_calls=(call,))
        calls_plan = ChatPlan("c", 0, "gpt-4o", "fp", (choice,), Usage(1, 1))
        journal = Journal()
        journal.record(
            0.0, b"POST", CHAT.encode(), headers(), b"not json", 200, calls_plan
        )
        view = journal.query()[0]
        self.assertEqual(
            view["reply"]["tool_calls"], [{"name": "lookup", "arguments": '{"id": 1}'}]
        )
        self.assertIsNone(view["reply"]["text"])
        self.assertEqual(view["body"], "not json")


class KeptTests(TestCase):
    """``keep`` packs later, in batches; no read ever misses a kept record."""

    def args(self, n: int) -> Answer:
        head = b"POST %b HTTP/1.1\r\nX-N: %d" % (CHAT.encode(), n)
        return (float(n), head, b"{}", 200, None)

    def test_kept_records_read_as_recorded_ones(self) -> None:
        from mockai_tw.journal import KEEP_BATCH

        kept, recorded = Journal(size=100), Journal(size=100)
        for n in range(KEEP_BATCH + 5):
            kept.keep(*self.args(n))
            time, head, body, status, reply = self.args(n)
            recorded.record(time, b"POST", CHAT.encode(), head, body, status, reply)
            # Every read packs what is held: the two never differ.
            self.assertEqual(len(kept), len(recorded))
        self.assertEqual(kept.query(), recorded.query())
        self.assertEqual(kept.held, recorded.held)
        self.assertEqual(list(kept.ring), list(recorded.ring))

    def test_a_batch_is_packed_without_a_read(self) -> None:
        from mockai_tw.journal import KEEP_BATCH

        journal = Journal()
        for n in range(KEEP_BATCH):
            journal.keep(*self.args(n))
        self.assertEqual((len(journal._kept), len(journal._ring)), (0, KEEP_BATCH))

    def test_clear_and_a_resize_count_what_is_held(self) -> None:
        journal = Journal(size=10)
        for n in range(3):
            journal.keep(*self.args(n))
        journal.configure(2, True, 1 << 20)
        self.assertEqual([r["time"] for r in journal.query()], [1.0, 2.0])
        journal.keep(*self.args(9))
        self.assertEqual(journal.clear(), 3)
        self.assertEqual((len(journal), journal.held), (0, 0))


class _Store:
    """A header store with only the duck-typed face (no ``_rawHeaders``)."""

    def __init__(self, headers: Headers) -> None:
        self.headers = headers

    def getAllRawHeaders(self) -> Any:
        return self.headers.getAllRawHeaders()


def _compact(choice: Any) -> tuple[Any, ...]:
    """A choice or output item compacted the long way (what the journal must match)."""
    item_call = getattr(choice, "call", None)
    if item_call is not None:
        return (None, [[item_call.name, item_call.arguments]], None)
    calls = [[c.name, c.arguments] for c in getattr(choice, "tool_calls", ())]
    single = getattr(choice, "function_call", None)
    if single is not None:
        calls.append([single.name, single.arguments])
    finish = getattr(choice, "finish_reason", None)
    return (None if calls else getattr(choice, "text", None), calls, finish)


class FastPathTests(TestCase):
    """The common case is packed without the general helpers: the same records."""

    shared = (ChoicePlan(0, ("h\u00e9", "llo"), "stop"),)

    def replies(self) -> list[Any]:
        call = ToolCallPlan("call_1", "lookup", '{"id": 1}', ('{"id": 1}',))
        shared = self.shared
        return [
            None,
            plan("plain"),
            plan("ruled", "r1"),
            ChatPlan("a", 0, "m", "fp", shared, Usage(3, 2)),
            ChatPlan("b", 0, "m", "fp", shared, Usage(4, 2)),
            ChatPlan(
                "c",
                0,
                "m",
                "fp",
                (
                    ChoicePlan(0, (), "tool_calls", tool_calls=(call, call)),
                    ChoicePlan(1, (), "function_call", function_call=call),
                    ChoicePlan(2, ("x",), "length"),
                ),
                Usage(1, 9),
            ),
            SimpleNamespace(
                model="r",
                rule=None,
                output=(MessageOutput("m1", ("a", "b")), CallOutput("c1", call)),
                usage=Usage(2, 2),
            ),
            TokenCount("text-embedding-3-small", 7),
            SimpleNamespace(choices=[SimpleNamespace(text="t", finish_reason="s")]),
        ]

    def test_compact_reply_matches_the_long_way(self) -> None:
        for reply in self.replies() * 2:  # twice: the second from the cache
            if reply is None:
                self.assertEqual(compact_reply(reply), b"")
                continue
            choices = getattr(reply, "choices", None)
            if choices is None:
                choices = getattr(reply, "output", ())
            usage = getattr(reply, "usage", None)
            counts = None
            if usage is not None:
                counts = [usage.prompt_tokens, usage.completion_tokens]
            elif isinstance(getattr(reply, "prompt_tokens", None), int):
                counts = [reply.prompt_tokens, 0]
            expected = orjson.dumps(([_compact(c) for c in choices or ()], counts))
            self.assertEqual(compact_reply(reply), expected, reply)

    def test_a_changed_mutable_reply_is_packed_afresh(self) -> None:
        choice = SimpleNamespace(text="one", finish_reason="stop")
        reply = SimpleNamespace(choices=(choice,), usage=Usage(1, 1))
        self.assertIn(b'"one"', compact_reply(reply))
        choice.text = "two"
        self.assertIn(b'"two"', compact_reply(reply))

    def test_a_batch_packs_as_one_record_at_a_time(self) -> None:
        """``keep``'s batch packs a reply whose tail it has packed before
        without ``record``: the bytes must be the same, whatever differs
        between requests (counts, rule, model, body, head), and answers
        kept or recorded (an error, a fault, a header store) keep their
        order."""
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nX-N: 1"
        entries: list[Entry] = []
        # Built once, as the engine shares a canned reply's parts.
        replies = self.replies()
        for round_ in range(6):
            for n, reply in enumerate(replies + replies[1:3]):
                for error, fault in ((None, None), (None, "trickle")):
                    entries.append(
                        (
                            float(round_ * 100 + n),
                            b"POST",
                            CHAT.encode(),
                            head if n % 3 else headers(X_N=str(n)),
                            None if n == 4 else b'{"n": %d}' % n,
                            200 + round_,
                            reply,
                            error,
                            fault,
                        )
                    )
            entries.append(
                (
                    1.0,
                    b"POST",
                    CHAT.encode(),
                    head,
                    b"{}",
                    400,
                    None,
                    ApiError(400, "bad"),
                    None,
                )
            )
            # Counts that change between requests answered alike.
            entries.append(
                (
                    2.0,
                    b"POST",
                    CHAT.encode(),
                    head,
                    b"x" * (MAX_BODY_BYTES + 1) if round_ == 2 else b"{}",
                    200,
                    ChatPlan("d", 0, "m", "fp", self.shared, Usage(round_, 7)),
                    None,
                    None,
                )
            )
        kept, recorded = Journal(size=1000), Journal(size=1000)
        slow: list[Any] = []

        def counted(entry: Entry) -> bytes:
            slow.append(entry[6])
            return Journal._pack(kept, entry)

        kept._pack = counted  # type: ignore[method-assign]
        for entry in entries:
            # As the server routes a request.
            time, _, _, lines, body, status, reply, error, fault = entry
            if type(lines) is bytes and error is None and fault is None:
                kept.keep(time, lines, body, status, reply)
            else:
                kept.record(*entry)
            recorded.record(*entry)
        self.assertEqual(list(kept.ring), list(recorded.ring))
        # Four answers a round are chat plans with a body kept: the batch
        # packs them itself once their tail has been packed (from the
        # second round on, at the latest).
        self.assertGreaterEqual(len(entries) - len(slow), 4 * 5)
        self.assertEqual(kept.held, recorded.held)
        self.assertEqual(len(kept), len(entries))

    def test_a_batch_tells_apart_answers_that_differ_in_one_part(self) -> None:
        """Answers one after another that share all but one part of their
        tail (counts, rule, model, the choices) each get their own."""
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: h"
        other = (ChoicePlan(0, ("other",), "stop"),)
        variants = [
            ChatPlan("a", 0, "m", "fp", self.shared, Usage(1, 2)),
            ChatPlan("a", 0, "m", "fp", self.shared, Usage(1, 3)),
            ChatPlan("a", 0, "m", "fp", self.shared, Usage(2, 3)),
            ChatPlan("a", 0, "n", "fp", self.shared, Usage(2, 3)),
            ChatPlan("a", 0, "n", "fp", self.shared, Usage(2, 3), rule="r"),
            ChatPlan("a", 0, "n", "fp", other, Usage(2, 3), rule="r"),
        ]
        kept, recorded = Journal(), Journal()
        slow: list[Any] = []

        def counted(entry: Entry) -> bytes:
            slow.append(entry)
            return Journal._pack(kept, entry)

        kept._pack = counted  # type: ignore[method-assign]
        _TAILS.clear()  # (a cache: what earlier tests packed)
        answers = [plan for plan in variants for _ in range(2)] * 3
        for n, reply in enumerate(answers):
            kept.keep(float(n), head, b"{}", 200, reply)
        kept.flush()
        for n, reply in enumerate(answers):
            recorded.record(float(n), b"POST", CHAT.encode(), head, b"{}", 200, reply)
        self.assertEqual(list(kept.ring), list(recorded.ring))
        self.assertEqual(len(set(kept.ring)), len(answers))
        # Each variant is packed the long way once, when first seen.
        self.assertEqual(len(slow), len(variants))

    def test_answers_held_as_they_came_are_bounded_as_packed_ones(self) -> None:
        """The ring holds an answer alike to others unpacked until a read;
        its size and bounds are those of its packed record."""
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: h"
        reply = ChatPlan("a", 0, "m", "fp", self.shared, Usage(1, 2))
        kept, recorded = Journal(size=50, max_bytes=4000), Journal(50, True, 4000)
        for n in range(200):
            recorded.record(float(n), b"POST", CHAT.encode(), head, b"{}", 200, reply)
            kept.keep(float(n), head, b"{}", 200, reply)
            if n == 100:
                kept.flush()
                self.assertIs(type(kept._ring[-1]), tuple)
                self.assertEqual(kept.held, recorded.held)
        self.assertEqual(kept.held, recorded.held)
        self.assertLessEqual(kept.held, 4000)
        self.assertEqual(list(kept.ring), list(recorded.ring))
        self.assertEqual({type(r) for r in kept._ring}, {bytes})

    def test_twisted_headers_and_any_store_pack_alike(self) -> None:
        stores = [
            Headers(),
            headers(Authorization="Bearer sk-x", X_Trace="t"),
            Headers({"X-Trace": ["a", "b"], "Host": ["h"]}),
            Headers({"Host": ["h"], "X-Empty": [""], "X-Twice": ["1", "2"]}),
        ]
        fast, general = Journal(), Journal()
        for raw in stores:
            for reply in self.replies():
                for error in (None, ApiError(400, "bad", param="input")):
                    one = fast.record(
                        1.0,
                        b"POST",
                        CHAT.encode(),
                        raw,
                        b"{}",
                        200,
                        reply,
                        error,
                        fault="trickle",
                    )
                    other = general.record(
                        1.0,
                        b"POST",
                        CHAT.encode(),
                        _Store(raw),
                        b"{}",
                        200,
                        reply,
                        error,
                        "trickle",
                    )
                    self.assertEqual(one, other)
        self.assertEqual(fast.query(), general.query())
        self.assertEqual(unpack(fast.ring[-1]).headers.count(b"\n"), 7)

    def test_a_head_as_it_came_reads_as_its_header_store(self) -> None:
        from mockai_tw.web.heads import read_head

        heads = [
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
            b"Authorization: Bearer sk-x\r\nContent-Length: 2",
            b"GET /v1/models?a=b HTTP/1.1\r\nX-Twice: 1\r\nx-twice:\t2 \r\n"
            b"X-Empty:\r\nCookie: k=v\r\nAPI-Key: secret",
            b"DELETE /v1/files/f HTTP/1.0",
        ]
        as_came, as_store = Journal(), Journal()
        for raw in heads:
            head = read_head(raw, 500, 16384)
            assert head is not None
            store = Headers()
            store._rawHeaders = head.headers  # type: ignore[assignment]
            for journal, kept in ((as_came, raw), (as_store, store)):
                journal.record(1.0, head.command, head.path, kept, b"", 200)
        came, stored = as_came.query(), as_store.query()
        self.assertEqual(came, stored)
        self.assertEqual(came[1]["headers"]["x-twice"], "1, 2")
        self.assertEqual(came[1]["headers"]["api-key"], "[redacted]")
        self.assertEqual(came[2]["headers"], {})


class LiveJournalTests(TestCase):
    async def read(self, live: Any, query: str = "") -> list[dict[str, Any]]:
        response, payload = await live.json(
            "GET", "/_mock/requests" + query, token=ADMIN
        )
        self.assertEqual(response.code, 200, payload)
        requests: list[dict[str, Any]] = payload["requests"]
        return requests

    async def test_every_v1_request_is_recorded_and_redacted(self) -> None:
        live = await start(
            self,
            {
                "admin_token": ADMIN,
                "rules": [
                    {"name": "hello", "match": {"content": "hello"}, "answer": "Hi!"}
                ],
            },
        )
        client = live.sdk()
        await deferToThread(
            lambda: client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
            )
        )
        stream = await live.request(
            "POST",
            CHAT,
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        await treq.content(stream)
        await live.json("GET", "/v1/models", token="wrong")
        await live.json(
            "POST",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            {"messages": [{"role": "user", "content": "hello"}]},
            token=None,
            headers={"api-key": TOKEN},
        )
        await live.json("GET", "/health", token=None)
        records = await self.read(live)
        self.assertEqual(
            [(r["method"], r["path"], r["status"]) for r in records],
            [
                ("POST", CHAT, 200),
                ("POST", CHAT, 200),
                ("GET", "/v1/models", 401),
                ("POST", "/openai/deployments/gpt-4o/chat/completions", 200),
            ],
        )
        sdk_call, streamed, refused, azure = records
        self.assertEqual(sdk_call["headers"]["authorization"], REDACTED)
        self.assertEqual(azure["headers"]["api-key"], REDACTED)
        for record in records:
            for value in record["headers"].values():
                self.assertNotIn(TOKEN, value)
                self.assertNotIn("wrong", value)
        self.assertEqual(sdk_call["rule"], "hello")
        self.assertEqual(sdk_call["reply"]["text"], "Hi!")
        self.assertEqual(
            sdk_call["body"]["messages"], [{"role": "user", "content": "hello"}]
        )
        self.assertTrue(streamed["stream"])
        self.assertEqual(streamed["rule"], "default")
        self.assertEqual(streamed["model"], "gpt-4o-mini")
        self.assertEqual(refused["error"]["code"], "invalid_api_key")
        self.assertEqual(azure["rule"], "hello")
        self.assertEqual(azure["query"], "api-version=2024-10-21")
        # Filters, and clearing.
        self.assertEqual(len(await self.read(live, "?rule=hello")), 2)
        self.assertEqual(len(await self.read(live, "?model=gpt-4o-mini")), 1)
        self.assertEqual(len(await self.read(live, "?path=/v1/models")), 1)
        self.assertEqual(
            [r["id"] for r in await self.read(live, "?limit=1")], [azure["id"]]
        )
        since = f"?since={streamed['time']}"
        self.assertEqual(len(await self.read(live, since)), 3)
        _response, payload = await live.json("GET", "/_mock/requests", token=ADMIN)
        self.assertGreater(payload["bytes"], 0)
        _response, payload = await live.json("DELETE", "/_mock/requests", token=ADMIN)
        self.assertEqual(payload, {"deleted": 4})
        self.assertEqual(await self.read(live), [])

    async def test_fault_and_bad_filters(self) -> None:
        live = await start(self, {"admin_token": ADMIN, "faults": {"header": True}})
        response, _ = await live.json(
            "POST",
            CHAT,
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            headers={"x-mock-fault": "http_503"},
        )
        self.assertEqual(response.code, 503)
        (record,) = await self.read(live)
        self.assertEqual(record["status"], 503)
        self.assertEqual(record["reply"]["fault"], "http_503")
        for query in ("?limit=0", "?since=yesterday", "?colour=red"):
            response, _payload = await live.json(
                "GET", "/_mock/requests" + query, token=ADMIN
            )
            self.assertEqual(response.code, 400, query)

    async def test_can_be_switched_off(self) -> None:
        live = await start(self, {"admin_token": ADMIN, "journal": {"enabled": False}})
        await live.json(
            "POST",
            CHAT,
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        )
        _response, payload = await live.json("GET", "/_mock/requests", token=ADMIN)
        self.assertEqual((payload["enabled"], payload["requests"]), (False, []))
        self.assertEqual((payload["bytes"], payload["max_bytes"]), (0, 32 << 20))
