"""Capacity: a server that queues and slows as it fills, like vLLM.

The pure model is tested on plain ``now`` values; the pipeline on a live
listener whose pacing runs on a ``task.Clock``, so "a stream ends and a
waiter starts" is one ``advance()`` and never a sleep.  Waits for the server
are on its own hooks (a request queued, admitted, refused, gone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IResponse

from mockai_tw.config import CapacityConfig, ConfigError, ModelCapacity
from mockai_tw.config_load import parse_config
from mockai_tw.engine.capacity import (
    DONE,
    REFUSED,
    RUNNING,
    SHARED,
    WAITING,
    Capacity,
    Pool,
    Ticket,
    slowed,
    slowed_pacing,
)
from mockai_tw.engine.plan import ChatPlan, Pacing, Usage
from mockai_tw.server import ListenService, MockServer
from tests.openapi import validate
from tests.support import TOKEN, Live, events, merge

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def config(**capacity: Any) -> CapacityConfig:
    return CapacityConfig(enabled=True, **capacity)


class PoolTests(TestCase):
    """The pure model: slots, a FIFO queue, refusals, the slowdown curve."""

    def test_runs_up_to_max_running_queues_up_to_max_waiting_then_refuses(
        self,
    ) -> None:
        pool = Pool("p", max_running=2, max_waiting=2)
        states = [pool.enter(now=0.0).state for _ in range(5)]
        self.assertEqual(states, [RUNNING, RUNNING, WAITING, WAITING, REFUSED])
        self.assertEqual((pool.running, len(pool.waiting)), (2, 2))

    def test_waiters_start_first_come_first_served(self) -> None:
        pool = Pool("p", max_running=1, max_waiting=3)
        started: list[Ticket] = []
        first = pool.enter(0.0)
        tickets = {
            name: pool.enter(t, started.append)
            for name, t in (("a", 1.0), ("b", 2.0), ("c", 3.0))
        }
        names = {id(ticket): name for name, ticket in tickets.items()}
        pool.release(first, now=10.0)
        self.assertEqual([names[id(t)] for t in started], ["a"])
        self.assertEqual(tickets["a"].state, RUNNING)
        self.assertEqual(tickets["a"].queue_s, 9.0)  # start - arrival
        pool.release(tickets["a"], now=12.0)
        pool.release(tickets["b"], now=15.0)
        self.assertEqual([names[id(t)] for t in started], ["a", "b", "c"])
        self.assertEqual(tickets["b"].queue_s, 10.0)
        self.assertEqual(tickets["c"].queue_s, 12.0)
        self.assertEqual(tickets["c"].start, 15.0)

    def test_a_newcomer_does_not_overtake_the_queue(self) -> None:
        pool = Pool("p", max_running=1, max_waiting=2)
        started: list[Ticket] = []
        first = pool.enter(0.0)
        waiter = pool.enter(1.0, started.append)
        pool.release(first, 2.0)
        self.assertEqual(started, [waiter])
        late = pool.enter(3.0)
        self.assertEqual(late.state, WAITING)

    def test_slowdown_is_linear_in_the_running_requests(self) -> None:
        pool = Pool("p", max_running=4, max_waiting=0, slowdown=3.0)
        self.assertEqual(pool.factor(0), 1.0)
        self.assertEqual(pool.factor(2), 2.0)
        self.assertEqual(pool.factor(4), 3.0)
        self.assertEqual(pool.factor(9), 3.0)
        # A request's factor is set when it starts, from the others running.
        factors = [pool.enter(0.0).factor for _ in range(4)]
        self.assertEqual(factors, [1.0, 1.5, 2.0, 2.5])
        self.assertEqual(pool.factor(), 3.0)
        self.assertEqual(Capacity(config(slowdown_at_capacity=3.0)).factor(pool), 3.0)

    def test_no_slowdown_by_default(self) -> None:
        pool = Capacity(config(max_running=2)).pool(MODEL)
        self.assertEqual([pool.enter(0.0).factor for _ in range(2)], [1.0, 1.0])

    def test_a_cancelled_waiter_leaves_the_queue_at_once(self) -> None:
        pool = Pool("p", max_running=1, max_waiting=2)
        started: list[str] = []
        first = pool.enter(0.0)
        gone = pool.enter(1.0, lambda t: started.append("gone"))
        kept = pool.enter(2.0, lambda t: started.append("kept"))
        pool.release(gone, 3.0)
        self.assertEqual(gone.state, DONE)
        self.assertEqual(list(pool.waiting), [kept])
        # Its place is free: another fits in the queue again.
        self.assertEqual(pool.enter(4.0).state, WAITING)
        pool.release(first, 5.0)
        self.assertEqual(started, ["kept"])

    def test_release_twice_or_refused_changes_nothing(self) -> None:
        pool = Pool("p", max_running=1, max_waiting=0)
        running = pool.enter(0.0)
        refused = pool.enter(0.0)
        self.assertEqual(refused.state, REFUSED)
        pool.release(refused, 1.0)
        self.assertEqual(pool.running, 1)
        pool.release(running, 1.0)
        pool.release(running, 1.0)
        self.assertEqual(pool.running, 0)

    def test_waiters_that_finish_at_once_start_the_next_without_recursion(
        self,
    ) -> None:
        pool = Pool("p", max_running=1, max_waiting=5000)
        order: list[float] = []
        first = pool.enter(0.0)

        def finish(ticket: Ticket) -> None:
            order.append(ticket.arrival)
            pool.release(ticket, 1.0)  # an instant reply: its slot frees now

        for i in range(5000):
            pool.enter(float(i), finish)
        pool.release(first, 5000.0)
        self.assertEqual(order, [float(i) for i in range(5000)])
        self.assertEqual((pool.running, len(pool.waiting)), (0, 0))

    def test_models_named_by_glob_have_their_own_pool(self) -> None:
        capacity = Capacity(
            config(
                max_running=1,
                max_waiting=0,
                models={
                    "gpt-4o": ModelCapacity(max_running=3),
                    "gpt-4.1*": ModelCapacity(max_waiting=2),
                },
            )
        )
        self.assertIs(capacity.pool("gpt-4.1-mini"), capacity.pool("gpt-4.1-nano"))
        self.assertIs(capacity.pool("o3-mini"), capacity.pools[SHARED])
        self.assertIs(capacity.pool("gpt-4o-mini"), capacity.pools[SHARED])
        self.assertEqual(capacity.pool("gpt-4o").max_running, 3)
        self.assertEqual(capacity.pool("gpt-4o").max_waiting, 0)  # the global one
        self.assertEqual(capacity.pool("gpt-4.1").max_running, 1)
        self.assertEqual(capacity.pool("gpt-4.1").max_waiting, 2)
        states = [capacity.enter("gpt-4.1", 0.0).state for _ in range(4)]
        self.assertEqual(states, [RUNNING, WAITING, WAITING, REFUSED])
        # The shared pool is untouched by another pool's queue.
        self.assertEqual(capacity.enter("o3-mini", 0.0).state, RUNNING)
        self.assertEqual(capacity.enter("gpt-4o-mini", 0.0).state, REFUSED)

    def test_new_limits_apply_to_what_waits(self) -> None:
        capacity = Capacity(config(max_running=1, max_waiting=5))
        started: list[Ticket] = []
        capacity.enter(MODEL, 0.0)
        waiters = [capacity.enter(MODEL, 1.0, started.append) for _ in range(3)]
        capacity.configure(config(max_running=2, max_waiting=5), now=4.0)
        self.assertEqual(started, waiters[:1])
        self.assertEqual(waiters[0].queue_s, 3.0)
        # A smaller queue refuses newcomers but keeps those already in it.
        capacity.configure(config(max_running=2, max_waiting=1), now=5.0)
        self.assertEqual(len(capacity.pool(MODEL).waiting), 2)
        self.assertEqual(capacity.enter(MODEL, 5.0).state, REFUSED)
        # Turned off: everyone waiting starts at once.
        capacity.configure(CapacityConfig(enabled=False), now=6.0)
        self.assertEqual(started, waiters)
        self.assertFalse(capacity.enabled)

    def test_a_pool_dropped_by_a_reload_lets_its_waiters_go(self) -> None:
        limited = config(models={"gpt-4o": ModelCapacity(max_running=1)})
        capacity = Capacity(limited)
        started: list[Ticket] = []
        running = capacity.enter("gpt-4o", 0.0)
        waiter = capacity.enter("gpt-4o", 0.0, started.append)
        capacity.configure(config(), now=1.0)
        self.assertEqual(started, [waiter])
        self.assertIs(capacity.pool("gpt-4o"), capacity.pools[SHARED])
        capacity.release(running, 2.0)  # to the pool it came from
        self.assertEqual(running.pool.running, 1)

    def test_refusals_by_status(self) -> None:
        for status, kind, code in (
            (429, "requests", "concurrency_limit_exceeded"),
            (503, "server_error", "server_overloaded"),
        ):
            capacity = Capacity(
                config(max_running=1, max_waiting=0, refuse_status=status)
            )
            capacity.enter(MODEL, 0.0)
            ticket = capacity.enter(MODEL, 0.0)
            error = capacity.refusal(ticket, MODEL)
            self.assertEqual(
                (error.status, error.type, error.code, error.param),
                (status, kind, code, None),
            )
            self.assertIn("1 running, 0 waiting for gpt-4o-mini", error.message)
            self.assertEqual(
                dict(error.headers), {"retry-after": "1", "retry-after-ms": "1000"}
            )

    def test_slowed_pacing_and_prefill(self) -> None:
        pacing = Pacing(first_s=0.1, interval_s=0.02)
        self.assertEqual(slowed_pacing(pacing, 2.0, 0.5), Pacing(0.7, 0.04))
        drawn = Pacing.from_gaps(0.1, [0.01, 0.03])
        self.assertEqual(slowed_pacing(drawn, 3.0, 0.0).offsets, (0.0, 0.03, 0.12))
        plan = ChatPlan(
            id="chatcmpl-x",
            created=0,
            model=MODEL,
            system_fingerprint="fp",
            choices=(),
            usage=Usage(prompt_tokens=100, completion_tokens=3),
            pacing=pacing,
            delay_s=0.5,
        )
        stream = slowed(plan, 2.0, 4.0, streamed=True)
        self.assertAlmostEqual(stream.pacing.first_s, 0.2 + 0.4)
        self.assertEqual(stream.delay_s, 0.5)
        body = slowed(plan, 2.0, 4.0, streamed=False)
        self.assertAlmostEqual(body.delay_s, 1.0 + 0.4)
        self.assertEqual(body.pacing, pacing)
        self.assertIs(slowed(plan, 1.0, 0.0, streamed=True), plan)
        # An instant plain body (timing.non_stream off) stays instant.
        instant = ChatPlan(**{**plan.__dict__, "delay_s": 0.0})
        self.assertIs(slowed(instant, 3.0, 4.0, streamed=False), instant)
        # A plan without pacing (embeddings, moderations) is left alone.
        self.assertEqual(slowed("plan", 3.0, 4.0, streamed=True), "plan")


class ConfigTests(TestCase):
    def error(self, capacity: Any, environ: Mapping[str, str] | None = None) -> str:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", "capacity": capacity}, environ or {})
        return str(caught.exception)

    def test_off_by_default(self) -> None:
        loaded = parse_config({"access_token": "t"}, {}).capacity
        self.assertEqual(loaded, CapacityConfig())
        self.assertFalse(loaded.enabled)
        self.assertEqual(
            (loaded.refuse_status, loaded.slowdown_at_capacity), (429, 1.0)
        )

    def test_errors_name_the_key(self) -> None:
        cases = [
            (
                {"refuse_status": 500},
                "capacity.refuse_status: must be 429 or 503, got 500",
            ),
            ({"refuse_status": 600}, "capacity.refuse_status: must be <= 503"),
            ({"max_running": 0}, "capacity.max_running: must be >= 1"),
            ({"max_running": 2_000_000}, "capacity.max_running: must be <= 1e+06"),
            ({"max_waiting": -1}, "capacity.max_waiting: must be >= 0"),
            ({"max_waiting": 1.5}, "capacity.max_waiting: must be an integer"),
            (
                {"slowdown_at_capacity": 0.5},
                "capacity.slowdown_at_capacity: must be >= 1",
            ),
            (
                {"prefill_ms_per_token": -1},
                "capacity.prefill_ms_per_token: must be >= 0",
            ),
            (
                {"models": {"gpt-4o*": {"max_running": 0}}},
                "capacity.models.gpt-4o*.max_running: must be >= 1",
            ),
            (
                {"models": {"gpt-4o": {"max_queue": 1}}},
                "capacity.models.gpt-4o.max_queue: unknown key",
            ),
            ({"size": 1}, "capacity.size: unknown key"),
        ]
        for raw, expected in cases:
            self.assertTrue(
                self.error(raw).startswith(expected), (raw, self.error(raw))
            )

    def test_from_the_environment(self) -> None:
        loaded = parse_config(
            {"access_token": "t"},
            {"MOCKAI_CAPACITY__ENABLED": "true", "MOCKAI_CAPACITY__MAX_RUNNING": "3"},
        ).capacity
        self.assertEqual((loaded.enabled, loaded.max_running), (True, 3))
        self.assertTrue(
            self.error({}, {"MOCKAI_CAPACITY__MAX_WAITING": "-2"}).startswith(
                "capacity.max_waiting: must be >= 0"
            )
        )


# --- through the pipeline, on a live listener -----------------------------------


def chat(content: str, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        **extra,
    }


BASE: dict[str, Any] = {
    "metrics": {"naming": "vllm"},
    # Three pieces a stream, 0.1 s apart on the test's clock.
    "replies": ["abc"],
    "timing": {"itl": {"ms": 100}},
}


class Seen:
    """The server's hooks, recorded, and waits until one has fired n times."""

    NAMES = ("queued", "admitted", "first_byte", "error", "disconnected")

    def __init__(self, live: Live) -> None:
        self.requests: dict[str, list[Any]] = {name: [] for name in self.NAMES}
        self._waits: list[tuple[str, int, Deferred[None]]] = []
        for name in self.NAMES:
            live.server.hooks.on(name, lambda r, *_, n=name: self._saw(n, r))

    def _saw(self, name: str, request: Any) -> None:
        self.requests[name].append(request)
        self._check()

    def _check(self) -> None:
        for wait in list(self._waits):
            name, count, d = wait
            if len(self.requests[name]) >= count:
                self._waits.remove(wait)
                # On the next reactor turn: the hook's caller (the pipeline)
                # finishes its step before the test goes on.
                reactor.callLater(0, d.callback, None)

    def reached(self, name: str, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waits.append((name, count, d))
        self._check()
        return d

    def contents(self, name: str) -> list[str]:
        """Which requests (by their message) saw ``name``, in order."""
        return [
            json.loads(r.body_bytes)["messages"][0]["content"]
            for r in self.requests[name]
        ]


async def start_capacity(
    case: TestCase, overrides: Mapping[str, Any], reloaded: Mapping[str, Any] = {}
) -> tuple[Live, Clock, Seen]:
    """The server on a fake clock (pacing, waits, queue times), listening on
    the real reactor; ``reloaded``: what a reload then reads."""
    clock = Clock()
    raw = merge(merge({"access_token": TOKEN}, BASE), overrides)
    server = MockServer(
        parse_config(raw, {}),
        clock,
        loader=lambda: parse_config(merge(raw, reloaded), {}),
    )
    listener = ListenService(server, "tcp:0:interface=127.0.0.1", reactor)
    listener.startService()
    case.addCleanup(listener.stopService)
    port: Any = await listener.listening
    pool = HTTPConnectionPool(reactor, persistent=False)
    live = Live(server, listener, port.getHost().port, pool)
    case.addCleanup(server.site.quiet)
    case.addCleanup(pool.closeCachedConnections)

    def run_out() -> None:
        # A test that failed midway leaves streams open and requests waiting:
        # time runs on until every one is over, so the stop is not held up.
        for _ in range(20):
            clock.advance(3600)

    case.addCleanup(run_out)
    return live, clock, Seen(live)


async def scrape(live: Live) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = await live.request("GET", "/metrics")
    body = (await treq.content(response)).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return out


def value(samples: dict[str, Any], name: str, **labels: str) -> float | None:
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def check_error(case: TestCase, body: Any, status: int, code: str) -> None:
    """OpenAI's error shape, exactly: four keys, nothing else."""
    case.assertEqual(set(body), {"error"})
    error = body["error"]
    case.assertEqual(set(error), {"message", "type", "param", "code"})
    case.assertIsInstance(error["message"], str)
    case.assertEqual(error["param"], None)
    case.assertEqual(error["code"], code)
    case.assertEqual(error["type"], "requests" if status == 429 else "server_error")
    validate(body, "ErrorResponse")


class LiveCapacityTests(TestCase):
    async def test_two_run_two_wait_one_is_refused(self) -> None:
        live, clock, seen = await start_capacity(
            self, {"capacity": {"enabled": True, "max_running": 2, "max_waiting": 2}}
        )
        sent = {f"r{i}": live.request("POST", CHAT, chat(f"r{i}")) for i in range(5)}
        await seen.reached("admitted", 2)
        await seen.reached("queued", 2)
        await seen.reached("error", 1)
        (refused,) = seen.contents("error")
        response = await sent[refused]
        body = json.loads(await treq.content(response))
        self.assertEqual(response.code, 429)
        check_error(self, body, 429, "concurrency_limit_exceeded")
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(response.headers.getRawHeaders("retry-after-ms"), ["1000"])
        running, waiting = seen.contents("admitted"), seen.contents("queued")
        self.assertEqual(len(set(running + waiting + [refused])), 5)
        for name in running:  # their first chunk is out
            self.assertEqual((await sent[name]).code, 200)
        answered = {id(r) for r in seen.requests["first_byte"]}
        for request in seen.requests["queued"]:  # nothing yet, not even headers
            self.assertNotIn(id(request), answered)
            self.assertFalse(request.startedWriting)
        pool = live.server.capacity.pool(MODEL)
        self.assertEqual((pool.running, len(pool.waiting)), (2, 2))

        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 2.0
        )
        self.assertEqual(
            value(samples, "vllm:num_requests_running", model_name=MODEL), 2.0
        )
        self.assertEqual(value(samples, "mockai_requests_waiting", model=MODEL), 2.0)
        self.assertEqual(
            value(
                samples,
                "mockai_capacity_refusals_total",
                endpoint="chat",
                model=MODEL,
            ),
            1.0,
        )
        self.assertEqual(
            value(samples, "mockai_rate_limit_rejections_total", endpoint="chat"),
            None,
        )

        # The running streams end; the waiters start, first come first served.
        clock.advance(10)
        self.assertEqual(seen.contents("admitted"), running + waiting)
        self.assertEqual((pool.running, len(pool.waiting)), (2, 0))
        for name in running:
            chunks = events(await treq.content(await sent[name]))
            self.assertEqual(chunks[-1], b"[DONE]")
        for name in waiting:
            self.assertEqual((await sent[name]).code, 200)
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 0.0
        )
        self.assertEqual(value(samples, "mockai_requests_waiting", model=MODEL), 0.0)

        clock.advance(10)
        for name in waiting:
            chunks = events(await treq.content(await sent[name]))
            self.assertEqual(chunks[-1], b"[DONE]")
            text = "".join(
                json.loads(c)["choices"][0]["delta"].get("content") or ""
                for c in chunks[:-1]
                if json.loads(c)["choices"]
            )
            self.assertEqual(text, "abc")
        self.assertEqual((pool.running, len(pool.waiting)), (0, 0))
        samples = await scrape(live)
        queue_time = "vllm:request_queue_time_seconds"
        self.assertEqual(value(samples, f"{queue_time}_count", model_name=MODEL), 4.0)
        # Two started at once, two after the ten seconds the others ran.
        self.assertEqual(value(samples, f"{queue_time}_sum", model_name=MODEL), 20.0)
        self.assertEqual(
            value(samples, "vllm:num_requests_running", model_name=MODEL), 0.0
        )
        self.assertEqual(
            value(
                samples,
                "mockai_requests_total",
                endpoint="chat",
                model=MODEL,
                status="200",
            ),
            4.0,
        )

    async def test_refused_as_503_moves_no_rule_counter(self) -> None:
        once = {
            "name": "once",
            "match": {"content": {"contains": "second"}},
            "answer": "scripted",
            "times": 1,
        }
        live, clock, seen = await start_capacity(
            self,
            {
                "capacity": {
                    "enabled": True,
                    "max_running": 1,
                    "max_waiting": 0,
                    "refuse_status": 503,
                },
                "rules": [once],
            },
        )
        first = live.request("POST", CHAT, chat("first"))
        await seen.reached("admitted", 1)
        response, body = await live.json("POST", CHAT, chat("second", stream=False))
        self.assertEqual(response.code, 503)
        check_error(self, body, 503, "server_overloaded")
        self.assertIn("overloaded", body["error"]["message"])
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        entry = next(e for e in live.server.rules.entries() if e.id == "once")
        self.assertEqual((entry.hits, entry.left), (0, 1))
        clock.advance(10)
        await treq.content(await first)
        response, body = await live.json("POST", CHAT, chat("second", stream=False))
        self.assertEqual(response.code, 200)
        self.assertEqual(body["choices"][0]["message"]["content"], "scripted")
        samples = await scrape(live)
        self.assertEqual(
            value(
                samples,
                "mockai_capacity_refusals_total",
                endpoint="chat",
                model=MODEL,
            ),
            1.0,
        )

    async def test_a_client_gone_while_waiting_leaves_the_queue_at_once(
        self,
    ) -> None:
        live, clock, seen = await start_capacity(
            self, {"capacity": {"enabled": True, "max_running": 1, "max_waiting": 2}}
        )
        running = live.request("POST", CHAT, chat("running"))
        await seen.reached("admitted", 1)
        sent = {name: live.request("POST", CHAT, chat(name)) for name in ("b", "c")}
        await seen.reached("queued", 2)
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 2.0
        )
        kept, leaving = seen.contents("queued")
        sent[leaving].cancel()
        await self.assertFailure(sent[leaving], ResponseNeverReceived)
        await seen.reached("disconnected", 1)
        # At once: no clock has moved, nobody finished.
        pool = live.server.capacity.pool(MODEL)
        self.assertEqual((pool.running, len(pool.waiting)), (1, 1))
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 1.0
        )
        self.assertEqual(value(samples, "mockai_requests_waiting", model=MODEL), 1.0)
        clock.advance(10)
        await treq.content(await running)
        self.assertEqual(seen.contents("admitted"), ["running", kept])
        clock.advance(10)
        chunks = events(await treq.content(await sent[kept]))
        self.assertEqual(chunks[-1], b"[DONE]")
        self.assertEqual((pool.running, len(pool.waiting)), (0, 0))
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 0.0
        )
        self.assertEqual(
            value(
                samples,
                "mockai_requests_total",
                endpoint="chat",
                model=MODEL,
                status="499",
            ),
            1.0,
        )

    async def test_a_reload_with_more_slots_starts_the_waiters(self) -> None:
        live, clock, seen = await start_capacity(
            self,
            {"capacity": {"enabled": True, "max_running": 1, "max_waiting": 4}},
            reloaded={"capacity": {"max_running": 3}},
        )
        sent = [live.request("POST", CHAT, chat("first"))]
        await seen.reached("admitted", 1)
        sent += [live.request("POST", CHAT, chat(n)) for n in ("b", "c")]
        await seen.reached("queued", 2)
        clock.advance(0.05)  # before the first stream's second piece
        live.server.reload()
        pool = live.server.capacity.pool(MODEL)
        self.assertEqual(pool.max_running, 3)
        self.assertEqual((pool.running, len(pool.waiting)), (3, 0))
        self.assertEqual(len(seen.requests["admitted"]), 3)
        queued = [r.queue_s for r in seen.requests["admitted"]]
        self.assertEqual(queued[0], 0.0)
        self.assertAlmostEqual(queued[1], 0.05)
        self.assertAlmostEqual(queued[2], 0.05)
        clock.advance(10)
        for d in sent:
            self.assertEqual(events(await treq.content(await d))[-1], b"[DONE]")
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:num_requests_waiting", model_name=MODEL), 0.0
        )

    async def test_a_paced_plain_body_holds_its_slot_for_its_delay(self) -> None:
        live, clock, seen = await start_capacity(
            self,
            {
                "capacity": {"enabled": True, "max_running": 1, "max_waiting": 1},
                "timing": {"non_stream": True},
            },
        )
        first = live.request("POST", CHAT, chat("first", stream=False))
        await seen.reached("admitted", 1)
        second = live.request("POST", CHAT, chat("second", stream=False))
        await seen.reached("queued", 1)
        clock.advance(0.1)  # not yet: three pieces take 0.2 s
        self.assertEqual(len(seen.requests["admitted"]), 1)
        clock.advance(0.1)
        self.assertEqual(len(seen.requests["admitted"]), 2)
        self.assertAlmostEqual(seen.requests["admitted"][1].queue_s, 0.2)
        clock.advance(1)
        for d in (first, second):
            response = await d
            body = json.loads(await treq.content(response))
            self.assertEqual(response.code, 200)
            self.assertEqual(body["choices"][0]["message"]["content"], "abc")

    async def test_an_instant_reply_frees_its_slot_at_once(self) -> None:
        live, _, seen = await start_capacity(
            self, {"capacity": {"enabled": True, "max_running": 1, "max_waiting": 0}}
        )
        for i in range(3):
            response, body = await live.json("POST", CHAT, chat(f"n{i}", stream=False))
            self.assertEqual(response.code, 200, body)
        self.assertEqual(live.server.capacity.pool(MODEL).running, 0)
        self.assertEqual(seen.requests["queued"], [])

    async def test_slowdown_and_prefill_apply_when_it_starts(self) -> None:
        live, clock, seen = await start_capacity(
            self,
            {
                "capacity": {
                    "enabled": True,
                    "max_running": 2,
                    "max_waiting": 1,
                    "slowdown_at_capacity": 3.0,
                    "prefill_ms_per_token": 1.0,
                },
                "timing": {"ttft": {"ms": 100}},
            },
        )
        sent = [live.request("POST", CHAT, chat("a"))]
        await seen.reached("admitted", 1)
        sent.append(live.request("POST", CHAT, chat("b")))
        await seen.reached("admitted", 2)
        sent.append(live.request("POST", CHAT, chat("c")))
        await seen.reached("queued", 1)
        alone, joined = seen.requests["admitted"]
        prefill = alone.reply.usage.prompt_tokens / 1000.0
        self.assertGreater(prefill, 0)
        # Alone: the configured pace and the prefill.
        self.assertAlmostEqual(alone.reply.pacing.first_s, 0.1 + prefill)
        self.assertAlmostEqual(alone.reply.pacing.interval_s, 0.1)
        # With one other running of two slots: 1 + (3 - 1) * 1/2 = twice as slow.
        self.assertAlmostEqual(joined.reply.pacing.first_s, 0.2 + prefill)
        self.assertAlmostEqual(joined.reply.pacing.interval_s, 0.2)
        # The first chunk of "a" (not "b") is out by 0.1 s plus its prefill.
        clock.advance(0.1 + prefill + 0.001)
        self.assertEqual(alone.stream.events_written, 2)  # role, then "a"
        self.assertEqual(joined.stream.events_written, 0)
        # Both end in one tick, "a" first: "c" starts while "b" still runs.
        clock.advance(10)
        waiter = seen.requests["admitted"][2]
        self.assertAlmostEqual(waiter.reply.pacing.interval_s, 0.2)
        clock.advance(10)
        for d in sent:
            self.assertEqual(events(await treq.content(await d))[-1], b"[DONE]")

    async def test_off_nothing_is_counted_or_held(self) -> None:
        live, clock, seen = await start_capacity(
            self, {"capacity": {"enabled": False, "max_running": 1}}
        )
        sent = [live.request("POST", CHAT, chat(f"n{i}")) for i in range(3)]
        await seen.reached("admitted", 3)
        self.assertEqual(live.server.capacity.pool(MODEL).running, 0)
        self.assertEqual([r.queue_s for r in seen.requests["admitted"]], [None] * 3)
        clock.advance(10)
        responses: list[IResponse] = [await d for d in sent]
        for response in responses:
            self.assertEqual(events(await treq.content(response))[-1], b"[DONE]")
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "vllm:request_queue_time_seconds_count", model_name=MODEL),
            None,
        )
