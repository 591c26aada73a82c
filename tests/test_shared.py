"""One server across processes: two servers on one real redis-server.

Each test starts its own ``redis-server`` on a free loopback port
(tests/redisserver.py) and two servers built by ``makeService`` that share
it through ``state.backend: redis``; what one is told, the other knows.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.redisserver import RedisServer, free_port
from tests.support import Live, start
from tests.test_daemon import AUTH, SEED_CONFIG, ConfiguredDaemon

ADMIN = "sk-admin-test"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def body(response: Any) -> Any:
    return json.loads(await treq.content(response))


class Pair:
    """Two servers (``a`` and ``b``) sharing one Redis."""

    def __init__(self, redis: RedisServer, a: Live, b: Live) -> None:
        self.redis = redis
        self.a = a
        self.b = b


async def pair(
    case: TestCase, overrides: dict[str, Any] | None = None, **state: Any
) -> Pair:
    redis = await RedisServer.start(case)
    config = {
        "admin_token": ADMIN,
        "state": {"backend": "redis", "url": redis.url, **state},
        **(overrides or {}),
    }
    a = await start(case, config)
    b = await start(case, config)
    return Pair(redis, a, b)


async def chat(live: Live, content: str = "hi", **extra: Any) -> tuple[int, Any]:
    sent = {**CHAT, "messages": [{"role": "user", "content": content}], **extra}
    response = await live.request("POST", "/v1/chat/completions", sent)
    return response.code, await body(response)


def limits(**budgets: int) -> dict[str, Any]:
    return {"enabled": True, **budgets}


def reply(answer: Any) -> str:
    return str(answer["choices"][0]["message"]["content"])


def connection(live: Live, up: bool) -> Deferred[None]:
    """Fires when ``live``'s store is (or is no longer) connected."""
    d: Deferred[None] = Deferred()
    shared = live.server.shared
    assert shared is not None
    if shared.connected == up:
        d.callback(None)
        return d
    stop: list[Any] = []

    def changed(now: bool) -> None:
        if now == up and not d.called:
            stop[0]()
            d.callback(None)

    stop.append(shared.store.watch_connection(changed))
    return d


class SharedRulesTests(TestCase):
    async def test_a_rule_added_on_one_answers_on_the_other_exactly_times(
        self,
    ) -> None:
        both = await pair(self)
        rule = {
            "name": "three",
            "match": {"content": {"contains": "knock"}},
            "answer": "who's there",
            "times": 3,
        }
        added = await both.a.request("POST", "/_mock/rules", rule, token=ADMIN)
        self.assertEqual(added.code, 201, await treq.content(added))
        answers = []
        for live in (both.b, both.a, both.b, both.a, both.b):
            code, answer = await chat(live, "knock knock")
            self.assertEqual(code, 200, answer)
            answers.append(reply(answer))
        self.assertEqual(answers[:3], ["who's there"] * 3)
        self.assertNotIn("who's there", answers[3:])
        listed = await body(await both.b.request("GET", "/_mock/rules", token=ADMIN))
        (entry,) = [r for r in listed["rules"] if r["id"] == "three"]
        self.assertEqual((entry["hits"], entry["times_left"]), (3, 0))

    async def test_a_sequence_advances_across_both_in_arrival_order(self) -> None:
        both = await pair(
            self,
            {
                "rules": [
                    {
                        "name": "seq",
                        "match": {"content": "step"},
                        "answer": {
                            "sequence": [
                                "one",
                                "two",
                                {"error": {"status": 500, "message": "three fails"}},
                            ]
                        },
                    }
                ]
            },
        )
        code, first = await chat(both.a, "step")
        self.assertEqual((code, reply(first)), (200, "one"))
        code, second = await chat(both.b, "step")
        self.assertEqual((code, reply(second)), (200, "two"))
        code, third = await chat(both.a, "step")
        self.assertEqual(code, 500, third)
        self.assertEqual(third["error"]["message"], "three fails")

    async def test_a_replaced_or_deleted_rule_is_so_everywhere(self) -> None:
        both = await pair(self)
        rule = {"name": "r", "match": {"content": "x"}, "answer": "first"}
        await both.a.request("POST", "/_mock/rules", rule, token=ADMIN)
        replaced = await both.b.request(
            "PUT", "/_mock/rules/r", {**rule, "answer": "second"}, token=ADMIN
        )
        self.assertEqual(replaced.code, 200, await treq.content(replaced))
        self.assertEqual(reply((await chat(both.a, "x"))[1]), "second")
        gone = await both.a.request("DELETE", "/_mock/rules/r", token=ADMIN)
        self.assertEqual(gone.code, 200)
        self.assertNotEqual(reply((await chat(both.b, "x"))[1]), "second")
        again = await both.b.request("POST", "/_mock/rules", rule, token=ADMIN)
        self.assertEqual(again.code, 201)
        clash = await both.a.request("POST", "/_mock/rules", rule, token=ADMIN)
        self.assertEqual(clash.code, 409, await treq.content(clash))
        reset = await both.a.request("DELETE", "/_mock/rules", token=ADMIN)
        self.assertEqual(reset.code, 200)
        self.assertEqual((await body(reset))["rules"], [])
        listed = await body(await both.b.request("GET", "/_mock/rules", token=ADMIN))
        self.assertEqual(listed["rules"], [])


class SharedLimitsTests(TestCase):
    async def test_requests_per_minute_are_one_budget(self) -> None:
        both = await pair(
            self, {"rate_limits": {"enabled": True, "requests_per_minute": 10}}
        )
        remaining = []
        for i in range(10):
            live = both.a if i % 2 else both.b
            response = await live.request("POST", "/v1/chat/completions", CHAT)
            self.assertEqual(response.code, 200, await treq.content(response))
            await treq.content(response)
            remaining.append(
                int(response.headers.getRawHeaders("x-ratelimit-remaining-requests")[0])
            )
        # Both count down one budget: 9, 8, ... 0 whichever answered.
        self.assertEqual(remaining, list(range(9, -1, -1)))
        for live in (both.a, both.b):
            response = await live.request("POST", "/v1/chat/completions", CHAT)
            error = await body(response)
            self.assertEqual(response.code, 429, error)
            self.assertEqual(error["error"]["code"], "rate_limit_exceeded")
            self.assertGreaterEqual(
                int(response.headers.getRawHeaders("retry-after")[0]), 1
            )

    async def test_tokens_per_minute_are_one_budget(self) -> None:
        both = await pair(
            self, {"rate_limits": {"enabled": True, "tokens_per_minute": 60}}
        )
        seen = []
        for live in (both.a, both.b, both.a, both.b, both.a, both.b, both.a):
            response = await live.request(
                "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 20}
            )
            await treq.content(response)
            seen.append(response.code)
        self.assertEqual(seen.count(200), 2, seen)
        self.assertEqual(set(seen[2:]), {429}, seen)


class SharedStoreTests(TestCase):
    async def test_a_response_made_on_one_continues_on_the_other(self) -> None:
        both = await pair(self)
        made = await both.a.request(
            "POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "remember"}
        )
        first = await body(made)
        self.assertEqual(made.code, 200, first)
        got = await both.b.request("GET", f"/v1/responses/{first['id']}")
        self.assertEqual(got.code, 200, await treq.content(got))
        self.assertEqual((await body(got))["id"], first["id"])
        follow = await both.b.request(
            "POST",
            "/v1/responses",
            {
                "model": "gpt-4o-mini",
                "input": "and now?",
                "previous_response_id": first["id"],
            },
        )
        second = await body(follow)
        self.assertEqual(follow.code, 200, second)
        self.assertEqual(second["previous_response_id"], first["id"])
        deleted = await both.b.request("DELETE", f"/v1/responses/{first['id']}")
        self.assertEqual(deleted.code, 200, await treq.content(deleted))
        # Gone for the other too (its own copy aside: it made it).
        both.a.server.responses.delete(first["id"])
        missing = await both.a.request("GET", f"/v1/responses/{first['id']}")
        self.assertEqual(missing.code, 404, await treq.content(missing))

    async def test_the_journal_is_the_fleets(self) -> None:
        both = await pair(self)
        await chat(both.a, "from a")
        await chat(both.b, "from b")
        await chat(both.a, "from a again")
        listed = await body(await both.b.request("GET", "/_mock/requests", token=ADMIN))
        contents = [r["body"]["messages"][0]["content"] for r in listed["requests"]]
        self.assertEqual(contents, ["from a", "from b", "from a again"])
        cleared = await both.b.request("DELETE", "/_mock/requests", token=ADMIN)
        self.assertEqual((await body(cleared))["deleted"], 3)
        after = await body(await both.a.request("GET", "/_mock/requests", token=ADMIN))
        self.assertEqual(after["requests"], [])

    async def test_config_and_health_say_which_backend(self) -> None:
        redis = await RedisServer.start(self, password="s3cret-pass")
        live = await start(
            self,
            {"admin_token": ADMIN, "state": {"backend": "redis", "url": redis.url}},
        )
        shown = await live.request("GET", "/_mock/config", token=ADMIN)
        text = (await treq.content(shown)).decode()
        self.assertNotIn("s3cret-pass", text)
        view = json.loads(text)
        self.assertEqual(view["state"]["backend"], "redis")
        self.assertIs(view["state"]["connected"], True)
        self.assertIn("***", view["config"]["state"]["url"])
        health = await body(await live.request("GET", "/health", token=None))
        self.assertEqual(health["state"]["backend"], "redis")
        self.assertIs(health["state"]["connected"], True)
        self.assertNotIn("s3cret-pass", json.dumps(health))


class OutageTests(TestCase):
    async def test_redis_lost_then_back(self) -> None:
        both = await pair(
            self, {"rate_limits": {"enabled": True, "requests_per_minute": 100}}
        )
        self.assertEqual((await chat(both.a))[0], 200)
        lost = connection(both.a, False)
        await both.redis.kill()
        await lost
        code, error = await chat(both.a)
        self.assertEqual(code, 503, error)
        self.assertEqual(error["error"]["code"], "mock_state_unavailable")
        self.assertEqual(error["error"]["type"], "server_error")
        ready = await both.a.request("GET", "/ready", token=None)
        self.assertEqual(ready.code, 503)
        self.assertEqual((await body(ready))["error"]["code"], "mock_state_unavailable")
        health = await both.a.request("GET", "/health", token=None)
        self.assertEqual(health.code, 200)
        self.assertIs((await body(health))["state"]["connected"], False)
        back = connection(both.a, True)
        await both.redis.start_again()
        await back
        self.assertEqual((await chat(both.a))[0], 200)
        ready = await both.a.request("GET", "/ready", token=None)
        self.assertEqual(ready.code, 200, await treq.content(ready))

    async def test_on_error_local_serves_from_its_own_state(self) -> None:
        both = await pair(self, on_error="local")
        lost = connection(both.a, False)
        await both.redis.kill()
        await lost
        code, answer = await chat(both.a)
        self.assertEqual(code, 200, answer)
        ready = await both.a.request("GET", "/ready", token=None)
        self.assertEqual(ready.code, 200)


class SharedDaemonTests(ConfiguredDaemon):
    """The real ``twistd -n mockai``: its start, and its workers sharing."""

    async def test_redis_down_at_start_stops_the_daemon(self) -> None:
        port = free_port()  # nothing listens there
        url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
        protocol = self.spawn(
            SEED_CONFIG
            + f"state: {{backend: redis, url: '{url}', connect_timeout_s: 1}}\n"
        )
        self.assertEqual(await protocol.ended, 1)
        out = protocol.out + protocol.err
        self.assertRegex(
            out.decode(),
            rf"mockai cannot start: state\.url redis://:\*\*\*@127\.0\.0\.1:{port}/0",
        )
        self.assertNotIn(b"hunter2-secret", out)
        self.assertNotIn(b"Traceback", out)
        self.assertNotIn(b"listening on", out)

    async def test_two_workers_share_one_budget(self) -> None:
        redis = await RedisServer.start(self)
        protocol = self.spawn(
            SEED_CONFIG
            + f"state: {{backend: redis, url: '{redis.url}'}}\n"
            + "rate_limits: {enabled: true, requests_per_minute: 6}\n",
            "--workers=2",
        )
        # Both listening: a loaded machine may start the second one late.
        port = await protocol.all_listening
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        codes: list[int] = []
        workers: set[str] = set()
        # Until both have answered: a worker that answers only after the
        # budget is spent must refuse too.
        while len(codes) < 12 or workers != {"0", "1"}:
            self.assertLess(len(codes), 200, workers)
            response = await treq.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=CHAT,
                headers=AUTH,
                pool=pool,
            )
            await treq.content(response)
            codes.append(response.code)
            workers.update(response.headers.getRawHeaders("x-mockai-worker") or [])
        self.assertEqual(codes, [200] * 6 + [429] * (len(codes) - 6))
        self.assertEqual(workers, {"0", "1"})
