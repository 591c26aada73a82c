"""The Redis store against a real ``redis-server``: every operation, two
clients sharing one server, NOSCRIPT, Redis lost and back, unix and TLS."""

from __future__ import annotations

import math
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from mockai_tw.state.redis import _PROTOCOLS, RedisStore
from mockai_tw.state.scripts import ADMIT, ALL
from mockai_tw.state.types import (
    AdmitResult,
    BucketCharge,
    Candidate,
    Counter,
    Pick,
    RulesSnapshot,
    StoreError,
    StoreUnavailable,
)
from mockai_tw.state.url import StateUrl, parse_url, redacted
from tests.redisserver import RedisServer, free_port
from tests.test_layers import loaded, ours

SECRET = "s3cr:t@/pa?ss"


class UrlTests(TestCase):
    def test_redis_urls(self) -> None:
        self.assertEqual(
            parse_url("redis://localhost"),
            StateUrl("redis", host="localhost", redacted="redis://localhost"),
        )
        url = parse_url("redis://alice:p%40ss@cache.example:6380/3")
        self.assertEqual(
            (url.host, url.port, url.db, url.username, url.password, url.tls),
            ("cache.example", 6380, 3, "alice", "p@ss", False),
        )
        self.assertEqual(url.redacted, "redis://alice:***@cache.example:6380/3")
        url = parse_url("redis://:pw@[::1]:7000/")
        self.assertEqual(
            (url.host, url.port, url.db, url.username), ("::1", 7000, 0, None)
        )
        url = parse_url("rediss://h.example?ssl_ca_certs=/etc/ca.pem")
        self.assertEqual(
            (url.tls, url.port, url.ssl_ca_certs), (True, 6379, "/etc/ca.pem")
        )

    def test_unix_urls(self) -> None:
        url = parse_url("unix:///run/redis/redis.sock?db=2")
        self.assertEqual(
            (url.unix, url.path, url.db), (True, "/run/redis/redis.sock", 2)
        )
        url = parse_url("unix://:pw@/tmp/r.sock")
        self.assertEqual((url.path, url.password), ("/tmp/r.sock", "pw"))

    def test_an_unencoded_password_is_still_a_password(self) -> None:
        url = parse_url(f"redis://u:{SECRET}@h:1/2")
        self.assertEqual(
            (url.password, url.host, url.port, url.db), (SECRET, "h", 1, 2)
        )
        self.assertNotIn(SECRET, repr(url))
        self.assertEqual(url.redacted, "redis://u:***@h:1/2")

    def test_bad_urls_never_show_the_password(self) -> None:
        for url in (
            f"http://:{SECRET}@h",
            f"redis://:{SECRET}@h:99999",
            f"redis://:{SECRET}@h:port",
            f"redis://:{SECRET}@h/db",
            f"redis://:{SECRET}@h/0/1",
            f"redis://:{SECRET}@",
            f"redis://:{SECRET}@[zz]:1",
            f"redis://:{SECRET}@h?nope=1",
            f"redis://{SECRET.replace(':', '')}@h",
            f"unix://:{SECRET}@relative.sock",
            f"unix:///tmp/s?db=-1&password={SECRET}",
            f"unix:///tmp/s?password={SECRET}",
            f"redis:{SECRET}@h",
            "redis://h#frag",
            "",
        ):
            with self.assertRaises(ValueError) as caught:
                parse_url(url)
            message = str(caught.exception)
            self.assertIn("state.url", message)
            self.assertNotIn("s3cr", message, url)
            self.assertNotIn("pa?ss", message, url)

    def test_redacted(self) -> None:
        self.assertEqual(redacted("redis://u:p@h:1/0"), "redis://u:***@h:1/0")
        self.assertEqual(redacted("redis://:p@h"), "redis://:***@h")
        self.assertEqual(redacted("redis://token@h"), "redis://***@h")
        self.assertEqual(redacted("redis://h:1/0"), "redis://h:1/0")
        self.assertEqual(redacted("unix:///a@b.sock"), "unix:///a@b.sock")
        self.assertEqual(redacted("nonsense:p@h"), "***@h")
        self.assertEqual(
            redacted("unix:///s?db=1&password=p"), "unix:///s?db=1&password=***"
        )


class LayerTests(TestCase):
    def test_url_types_and_scripts_are_leaves(self) -> None:
        for module in (
            "mockai_tw.state",
            "mockai_tw.state.url",
            "mockai_tw.state.types",
            "mockai_tw.state.scripts",
        ):
            names = loaded(module)
            self.assertEqual(
                [n for n in names if n.split(".")[0] in ("twisted", "txredisapi")],
                [],
                module,
            )
            self.assertEqual(
                {n for n in ours(names) if not n.startswith("mockai_tw.state")},
                {"mockai_tw"},
                module,
            )


class StoreCase(TestCase):
    """Each test its own redis-server (they are cheap: ~10 ms to start),
    started by its first ``store()``."""

    _server: RedisServer | None = None

    @property
    def server(self) -> RedisServer:
        assert self._server is not None, "no store() yet"
        return self._server

    async def store(self, url: str | None = None, **kw: Any) -> RedisStore:
        if self._server is None:
            self._server = await RedisServer.start(self)
        kw.setdefault("reconnect_delay", (0.05, 0.5))
        store = RedisStore(url or self.server.url, **kw)
        self.addCleanup(store.close)
        await store.wait_connected(10)
        return store


def limit(key: str, per_minute: int, amount: float = 1) -> BucketCharge:
    return BucketCharge(key, per_minute, float(per_minute), amount)


class BucketTests(StoreCase):
    async def test_connected_and_ping(self) -> None:
        store = await self.store()
        self.assertTrue(store.connected)
        rtt = await store.ping()
        self.assertGreater(rtt, 0)
        self.assertLess(rtt, 1)

    async def test_a_budget_admits_its_limit_then_says_how_long_to_wait(self) -> None:
        store = await self.store()
        results = [await store.admit(0, [limit("k", 10)]) for _ in range(11)]
        self.assertTrue(all(r.admitted for r in results[:10]))
        self.assertEqual([r.picks for r in results], [()] * 11)
        first = results[0].buckets[0]
        self.assertAlmostEqual(first.available, 9, places=2)
        self.assertEqual(first.wait, 0)
        self.assertAlmostEqual(first.reset, 6, places=1)
        refused = results[10]
        self.assertFalse(refused.admitted)
        self.assertFalse(refused.stale)
        state = refused.buckets[0]
        self.assertLess(state.available, 1)
        # one request per 6 s: the wait is what is missing of one at 1/6 per s
        self.assertAlmostEqual(state.wait, (1 - state.available) * 6, places=3)
        self.assertGreater(state.wait, 5)
        self.assertAlmostEqual(state.reset, (10 - state.available) * 6, places=3)

    async def test_all_buckets_or_none(self) -> None:
        store = await self.store()
        first = await store.admit(0, [limit("rpm", 100), limit("tpm", 1000, 900)])
        self.assertTrue(first.admitted)
        # tokens short: the request budget is not charged either
        refused = await store.admit(0, [limit("rpm", 100), limit("tpm", 1000, 200)])
        self.assertFalse(refused.admitted)
        rpm, tpm = refused.buckets
        self.assertEqual(rpm.wait, 0)
        self.assertAlmostEqual(rpm.available, 99, places=1)
        self.assertGreater(tpm.wait, 0)
        again = await store.charge([limit("rpm", 100)])
        self.assertTrue(again.admitted)
        self.assertAlmostEqual(again.buckets[0].available, 98, places=1)

    async def test_more_than_the_capacity_waits_forever(self) -> None:
        store = await self.store()
        result = await store.admit(0, [limit("tpm", 100, 101)])
        self.assertFalse(result.admitted)
        self.assertEqual(result.buckets[0].wait, math.inf)
        self.assertEqual(result.buckets[0].available, 100)

    async def test_a_new_limit_starts_the_bucket_afresh(self) -> None:
        store = await self.store()
        await store.charge([limit("k", 10, 10)])
        self.assertFalse((await store.charge([limit("k", 10)])).admitted)
        fresh = await store.charge([limit("k", 20)])
        self.assertTrue(fresh.admitted)
        self.assertAlmostEqual(fresh.buckets[0].available, 19, places=2)

    async def test_bucket_keys_expire_when_full_again(self) -> None:
        store = await self.store()
        result = await store.charge([limit("k", 60, 3)])
        ttl = await store._call("PTTL", store.key("bucket", "k"))
        self.assertGreater(ttl, 2000)
        self.assertLessEqual(ttl, math.ceil(result.buckets[0].reset * 1000))
        # a refusal writes nothing; a full bucket is no key at all
        await store.charge([limit("z", 60, 0)])
        self.assertEqual(await store._call("EXISTS", store.key("bucket", "z")), 0)

    async def test_bad_buckets_are_refused_before_redis(self) -> None:
        store = await self.store()
        for bucket in (("k", 0, 1.0, 1.0), ("k", 1, 0.0, 1.0), ("k", 1, 1.0, -1.0)):
            with self.assertRaises(ValueError):
                await store.charge([bucket])
        with self.assertRaises(ValueError):
            await store.admit(0, [], [[("r", 0)]])

    async def test_two_clients_share_one_budget_exactly(self) -> None:
        a, b = await self.store(), await self.store()
        calls = [(a, b)[i % 2].admit(0, [limit("shared", 10)]) for i in range(30)]
        results: list[AdmitResult] = await defer.gatherResults(calls)
        self.assertEqual(sum(r.admitted for r in results), 10)
        refused = [r for r in results if not r.admitted]
        self.assertEqual(len(refused), 20)
        self.assertTrue(all(r.buckets[0].wait > 0 for r in refused))

    async def test_prefixes_keep_servers_apart(self) -> None:
        a = await self.store(prefix="one:")
        b = await self.store(prefix="two:")
        await a.charge([limit("k", 1)])
        self.assertFalse((await a.charge([limit("k", 1)])).admitted)
        self.assertTrue((await b.charge([limit("k", 1)])).admitted)


class RuleCounterTests(StoreCase):
    async def test_times_are_claimed_exactly_across_clients(self) -> None:
        a, b = await self.store(), await self.store()
        question = [Candidate("limited", 3), Candidate("fallback", -1)]
        calls = [(a, b)[i % 2].admit(0, [], [question]) for i in range(10)]
        results: list[AdmitResult] = await defer.gatherResults(calls)
        picks = [r.picks[0].candidate for r in results]
        self.assertEqual(picks.count(0), 3)
        self.assertEqual(picks.count(1), 7)
        self.assertEqual(
            await a.counters(["limited", "fallback", "unused"]),
            {
                "limited": Counter(3, 0),
                "fallback": Counter(7, None),
                "unused": Counter(0, None),
            },
        )

    async def test_hits_advance_one_by_one_across_clients(self) -> None:
        a, b = await self.store(), await self.store()
        hits = []
        for store in (a, b, a, b):
            result = await store.admit(0, [], [[("sequence", -1)]])
            hits.append(result.picks[0])
        self.assertEqual(hits, [Pick(0, 1), Pick(0, 2), Pick(0, 3), Pick(0, 4)])

    async def test_questions_of_one_request_each_count(self) -> None:
        store = await self.store()
        result = await store.admit(0, [], [[("r", 2)], [("r", 2)], [("r", 2)], []])
        self.assertEqual(
            result.picks, (Pick(0, 1), Pick(0, 2), Pick(-1, 0), Pick(-1, 0))
        )

    async def test_a_refused_request_claims_nothing(self) -> None:
        store = await self.store()
        await store.charge([limit("k", 1)])
        result = await store.admit(0, [limit("k", 1)], [[("r", 5)]])
        self.assertFalse(result.admitted)
        self.assertEqual(result.picks, ())
        self.assertEqual(await store.counters(["r"]), {"r": Counter(0, None)})

    async def test_a_stale_version_changes_nothing(self) -> None:
        store = await self.store()
        version = await store.rules_put(0, [b"{}"], [])
        assert version is not None
        result = await store.admit(0, [limit("k", 1)], [[("r", 1)]])
        self.assertEqual(
            result, AdmitResult(stale=True, version=version, admitted=False)
        )
        self.assertEqual(await store._call("EXISTS", store.key("bucket", "k")), 0)
        self.assertEqual(await store.counters(["r"]), {"r": Counter(0, None)})
        fresh = await store.admit(version, [limit("k", 1)], [[("r", 1)]])
        self.assertEqual(
            (fresh.stale, fresh.admitted, fresh.picks), (False, True, (Pick(0, 1),))
        )

    async def test_release_undoes_the_claims(self) -> None:
        store = await self.store()
        questions = [[("once", 1), ("any", -1)], [("once", 1), ("any", -1)]]
        result = await store.admit(0, [], questions)
        self.assertEqual(result.picks, (Pick(0, 1), Pick(1, 1)))
        claimed = result.claimed(questions)
        self.assertEqual(claimed, ["once", "any"])
        self.assertEqual(await store.release(claimed), 2)
        self.assertEqual(
            await store.counters(["once", "any"]),
            {"once": Counter(0, 1), "any": Counter(0, None)},
        )
        again = await store.admit(0, [], questions[:1])
        self.assertEqual(again.picks, (Pick(0, 1),))
        # released after a reset: nothing to undo, nothing goes negative
        await store.reset_counters()
        self.assertEqual(await store.release(["once", "once"]), 0)
        self.assertEqual(await store.counters(["once"]), {"once": Counter(0, None)})

    async def test_reset_counters_scans_only_our_prefix(self) -> None:
        # "a*:" unescaped in SCAN MATCH would also match "ab:"
        ours = await self.store(prefix="a*:")
        theirs = await self.store(prefix="ab:")
        names = [f"rule-{i}" for i in range(2500)]
        await defer.gatherResults(
            [ours._call("HSET", ours.key("counter", n), "hits", 1) for n in names]
        )
        await theirs.admit(0, [], [[("kept", -1)]])
        await ours.charge([limit("bucket", 10)])
        self.assertEqual(await ours.delete_counters(["rule-0", "nothing"]), 1)
        self.assertEqual(await ours.reset_counters(), 2499)
        self.assertEqual(
            await ours.counters(names[:2]), dict.fromkeys(names[:2], Counter(0, None))
        )
        self.assertEqual(await theirs.counters(["kept"]), {"kept": Counter(1, None)})
        self.assertEqual(await ours._call("EXISTS", ours.key("bucket", "bucket")), 1)


class RulesTests(StoreCase):
    async def test_compare_and_set(self) -> None:
        a, b = await self.store(), await self.store()
        self.assertEqual((await a.rules_get()).version, 0)
        blob = bytes(range(256))  # any bytes, not only UTF-8
        v1 = await a.rules_put(0, [blob, b"second"], [b"last"])
        assert v1 is not None
        self.assertGreater(v1, 0)
        snapshot = await b.rules_get()
        self.assertEqual(
            (snapshot.version, snapshot.first, snapshot.last),
            (v1, (blob, b"second"), (b"last",)),
        )
        self.assertIsNone(await b.rules_put(0, [], []))  # a stale writer loses
        v2 = await b.rules_put(v1, [], [b"only"])
        self.assertEqual(v2, v1 + 1)
        self.assertEqual((await a.rules_get()).first, ())
        self.assertEqual((await a.admit(v1)).stale, True)

    async def test_subscribers_hear_of_changes(self) -> None:
        a, b = await self.store(), await self.store()
        heard: list[int | None] = []
        changed: defer.Deferred[None] = defer.Deferred()

        def told(version: int | None) -> None:
            heard.append(version)
            changed.callback(None)

        subscription = b.subscribe(told)
        await subscription.ready
        version = await a.rules_put(0, [b"x"], [])
        await changed
        self.assertEqual(heard, [version])


class JournalTests(StoreCase):
    async def test_bounded_by_size_across_clients(self) -> None:
        a, b = await self.store(), await self.store()
        for i in range(12):
            await (a, b)[i % 2].journal_append(b"record-%d" % i, 5, 1 << 20)
        self.assertEqual(await a.journal_len(), 5)
        self.assertEqual(
            await b.journal_all(), [b"record-%d" % i for i in range(7, 12)]
        )
        self.assertEqual(await b.journal_clear(), 5)
        self.assertEqual(await a.journal_all(), [])
        self.assertEqual(await a.journal_clear(), 0)

    async def test_bounded_by_bytes_and_the_newest_stays(self) -> None:
        a, b = await self.store(), await self.store()
        for i in range(10):
            await (a, b)[i % 2].journal_append(bytes([i]) * 100, 1000, 350)
        self.assertEqual(await a.journal_all(), [bytes([i]) * 100 for i in (7, 8, 9)])
        self.assertEqual(await a._call("GET", a.key("journal", "bytes")), b"300")
        await b.journal_append(b"\xff" * 1000, 1000, 350)  # larger than the bound
        self.assertEqual(await a.journal_all(), [b"\xff" * 1000])
        await a.journal_append(b"small", 1000, 350)
        self.assertEqual(await a.journal_all(), [b"small"])

    async def test_a_batch_goes_in_order_within_the_bounds(self) -> None:
        a, b = await self.store(), await self.store()
        await a.journal_append(b"first", 4, 1 << 20)
        self.assertEqual(
            await b.journal_append([b"r%d" % i for i in range(5)], 4, 1 << 20), 4
        )
        self.assertEqual(await a.journal_all(), [b"r1", b"r2", b"r3", b"r4"])
        self.assertEqual(await a._call("GET", a.key("journal", "bytes")), b"8")
        self.assertEqual(await a.journal_append([], 4, 1 << 20), 0)
        self.assertEqual(await a.journal_len(), 4)

    async def test_guard_logs_once_per_outage(self) -> None:
        store = await self.store()
        await self.server.kill()
        self.assertFalse(store.connected)
        seen: list[dict[str, Any]] = []
        observer = cast(ILogObserver, seen.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for _ in range(3):
            store.guard(store.journal_append(b"r", 10, 100), "journal")
        warned = [e for e in seen if e.get("what") == "journal"]
        # One line, no traceback (an outage is expected).
        self.assertEqual(len(warned), 1, warned)
        self.assertNotIn("log_failure", warned[0])
        self.assertNotIn("Traceback", formatEvent(warned[0]))


class KeyedBlobTests(StoreCase):
    async def test_responses_are_kept_least_recently_used_first_out(self) -> None:
        store = await self.store()
        for name in ("a", "b", "c"):
            self.assertEqual(await store.response_keep(name, name.encode() * 3, 3), 0)
        self.assertEqual(await store.response_get("a"), b"aaa")  # a is fresh now
        self.assertEqual(await store.response_keep("d", b"\x00d", 3), 1)
        self.assertIsNone(await store.response_get("b"))
        self.assertEqual(await store.response_get("a"), b"aaa")
        self.assertEqual(await store.response_get("d"), b"\x00d")
        self.assertTrue(await store.response_delete("a"))
        self.assertFalse(await store.response_delete("a"))
        self.assertEqual(
            await store._call("ZCARD", store.key("kv", "responses", "index")), 2
        )
        # a smaller size trims at the next put
        self.assertEqual(await store.response_keep("e", b"e", 1), 2)
        self.assertEqual(await store.response_get("e"), b"e")

    async def test_namespaces_and_clients(self) -> None:
        a, b = await self.store(), await self.store()
        await a.kv_put("files", "same-id", b"file", 10)
        await a.kv_put("responses", "same-id", b"response", 10)
        self.assertEqual(await b.kv_get("files", "same-id"), b"file")
        self.assertEqual(await b.response_get("same-id"), b"response")
        with self.assertRaises(ValueError):
            await a.kv_get("Bad:Name", "x")
        with self.assertRaises(ValueError):
            await a.kv_put("files", "x", b"", 0)


class ConnectionTests(StoreCase):
    async def test_scripts_come_back_after_script_flush(self) -> None:
        store = await self.store()
        self.assertEqual(
            await store._call("SCRIPT", "EXISTS", *(s.sha for s in ALL)), [1] * len(ALL)
        )
        await store._call("SCRIPT", "FLUSH")
        result = await store.admit(0, [limit("k", 5)], [[("r", -1)]])
        self.assertEqual((result.admitted, result.picks), (True, (Pick(0, 1),)))
        self.assertEqual(await store._call("SCRIPT", "EXISTS", ADMIT.sha), [1])

    async def test_redis_lost_and_back(self) -> None:
        store = await self.store()
        changes: list[bool] = []
        lost: defer.Deferred[None] = defer.Deferred()
        back: defer.Deferred[None] = defer.Deferred()

        def watch(up: bool) -> None:
            changes.append(up)
            (back if up else lost).callback(None)

        store.watch_connection(watch)
        heard: list[int | None] = []
        resubscribed: defer.Deferred[None] = defer.Deferred()

        def told(version: int | None) -> None:
            heard.append(version)
            resubscribed.callback(None)

        await store.subscribe(told).ready
        await store.charge([limit("k", 1)])
        pending = store.rules_get()
        await self.server.kill()
        await lost
        self.assertFalse(store.connected)
        with self.assertRaises(StoreUnavailable):
            await pending
        with self.assertRaises(StoreUnavailable) as caught:
            await store.admit(0, [limit("k", 1)])
        self.assertIn(self.server.url, str(caught.exception))
        await self.server.start_again()
        await back
        self.assertEqual(changes, [False, True])
        self.assertTrue(store.connected)
        # an empty Redis: the budget is full again, scripts loaded on connect
        self.assertTrue((await store.admit(0, [limit("k", 1)])).admitted)
        # the subscription is back too, and says notices may have been missed
        await resubscribed
        self.assertEqual(heard, [None])

    async def test_a_hung_redis_times_out(self) -> None:
        store = await self.store(reply_timeout=0.2)
        changes: list[bool] = []
        told = {True: defer.Deferred[None](), False: defer.Deferred[None]()}

        def watch(up: bool) -> None:
            changes.append(up)
            told[up].callback(None)

        store.watch_connection(watch)
        self.server.pause()
        with self.assertRaises(StoreUnavailable) as caught:
            await store.admit(0, [limit("k", 1)])
        self.assertIn("0.2 seconds", str(caught.exception))
        await told[False]  # the connection that timed out is dropped
        self.assertFalse(store.connected)
        self.server.resume()
        await told[True]
        # (the timed-out call may well have run once Redis woke up: a timeout
        # says "unknown", not "not done"; so another bucket here)
        self.assertTrue((await store.admit(0, [limit("other", 1)])).admitted)
        self.assertEqual(changes, [False, True])

    async def test_start_up_fails_naming_the_url_without_its_password(self) -> None:
        url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
        store = RedisStore(url, reconnect_delay=(0.05, 0.1), connect_timeout=1)
        self.addCleanup(store.close)
        with self.assertRaises(StoreUnavailable) as caught:
            await store.wait_connected(0.5)
        message = str(caught.exception)
        self.assertIn("state.url redis://:***@127.0.0.1:", message)
        self.assertIn("not reachable within 0.5s", message)
        self.assertNotIn("s3cr", message)
        with self.assertRaises(StoreUnavailable):
            await store.ping()

    async def test_the_closed_store_refuses(self) -> None:
        store = await self.store()
        await store.close()
        with self.assertRaises(StoreUnavailable):
            await store.ping()

    async def test_every_reply_shape_with_each_parser(self) -> None:
        # hiredis (C) when installed, else txredisapi's Python parser; both
        # must read nested, empty, nil and binary replies and NOSCRIPT alike.
        for hiredis in sorted(_PROTOCOLS):
            store = await self.store(prefix=f"p{hiredis:d}:", hiredis=hiredis)
            result = await store.admit(0, [limit("k", 6, 2)], [[("r", 1)], []])
            self.assertEqual(result.picks, (Pick(0, 1), Pick(-1, 0)), hiredis)
            self.assertAlmostEqual(result.buckets[0].reset, 20, places=1)
            self.assertEqual(await store.rules_get(), RulesSnapshot(0), hiredis)
            self.assertIsNone(await store.response_get("none"), hiredis)
            blob = bytes(range(256)) * 40
            await store.response_keep("bin", blob, 5)
            self.assertEqual(await store.response_get("bin"), blob, hiredis)
            self.assertEqual(await store.counters(["r", "x"]), {
                "r": Counter(1, 0), "x": Counter(0, None)
            })  # fmt: skip
            await store._call("SCRIPT", "FLUSH")
            self.assertEqual(await store.journal_append(b"", 1, 1), 1, hiredis)
            self.assertEqual(await store.journal_all(), [b""], hiredis)
            await store.close()

    async def test_redis_errors_are_store_errors(self) -> None:
        store = await self.store()
        await store._call("SET", store.key("journal"), "not a list")
        with self.assertRaises(StoreError) as caught:
            await store.journal_append(b"x", 1, 10)
        self.assertNotIsInstance(caught.exception, StoreUnavailable)


class OtherTransportTests(TestCase):
    async def connect(self, server: RedisServer, url: str | None = None) -> RedisStore:
        store = RedisStore(url or server.url, reconnect_delay=(0.05, 0.5))
        self.addCleanup(store.close)
        await store.wait_connected(10)
        return store

    async def test_unix_socket(self) -> None:
        server = await RedisServer.start(self, unix=True)
        store = await self.connect(server, f"{server.url}?db=3")
        self.assertTrue((await store.admit(0, [limit("k", 1)], [[("r", 1)]])).admitted)
        self.assertEqual(await store._call("DBSIZE"), 2)
        self.assertIn(await store._call("SELECT", 0), ("OK", b"OK"))

    async def test_tls(self) -> None:
        server = await RedisServer.start(self, tls=True)
        store = await self.connect(server)
        self.assertTrue((await store.charge([limit("k", 1)])).admitted)

    async def test_password(self) -> None:
        server = await RedisServer.start(self, password=SECRET)
        store = await self.connect(server)
        self.assertEqual(await store.journal_append(b"x", 5, 100), 1)
        wrong = RedisStore(server.url.replace("s3cr", "nope"))
        self.addCleanup(wrong.close)
        with self.assertRaises(StoreUnavailable) as caught:
            await wrong.wait_connected(5)
        self.assertIn("auth", str(caught.exception))
        self.assertNotIn("s3cr", str(caught.exception))
