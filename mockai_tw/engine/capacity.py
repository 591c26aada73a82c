"""The capacity model: a server that queues and slows as it fills, like vLLM.

Pure: pools of slots with a FIFO queue, every decision given ``now``.  A
request ``enter``s its pool and is running at once, waiting (its
``on_start`` is called when a slot frees), or refused (the queue is full);
``release`` gives back what it holds -- a slot, which starts the next
waiter, or its place in the queue.  The slowdown a request gets is fixed
when it starts, from how many others were running then.  It knows nothing
of HTTP, the reactor or metrics: the pipeline joins them.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Any

from mockai_tw.config import CapacityConfig
from mockai_tw.engine.plan import Pacing
from mockai_tw.errors import ApiError
from mockai_tw.globs import for_model

# A ticket's states.
RUNNING = "running"
WAITING = "waiting"
REFUSED = "refused"
# Released: it left its slot (finished, disconnected) or the queue.
DONE = "done"

#: The codes of a refusal, by status (distinct from rate_limit_exceeded).
REFUSAL_CODES = {429: "concurrency_limit_exceeded", 503: "server_overloaded"}
#: What a refusal asks the client to wait, in seconds.
RETRY_AFTER_S = 1
#: The pool of every model no ``capacity.models`` entry names.
SHARED = "*"
# Models whose pool has been looked up, at most (a guard: names are open).
_MAX_CACHED = 1024

Starter = Callable[["Ticket"], None]


class Ticket:
    """One request's place: running, waiting or refused, and its times."""

    __slots__ = ("arrival", "factor", "on_start", "pool", "start", "state")

    def __init__(self, pool: Pool, arrival: float, on_start: Starter | None) -> None:
        self.pool = pool
        self.arrival = arrival
        self.on_start = on_start
        self.start: float | None = None
        self.state = WAITING
        # The slowdown it runs with, fixed when it starts.
        self.factor = 1.0

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def waiting(self) -> bool:
        return self.state == WAITING

    @property
    def queue_s(self) -> float:
        """How long it waited: start - arrival (0 until it starts)."""
        return 0.0 if self.start is None else max(0.0, self.start - self.arrival)


class Pool:
    """Slots for ``max_running`` requests and a queue of ``max_waiting``."""

    def __init__(
        self, name: str, max_running: int, max_waiting: int, slowdown: float = 1.0
    ) -> None:
        self.name = name
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.slowdown = slowdown
        self.running = 0
        self.waiting: deque[Ticket] = deque()
        # Set while waiters are being started (a start may release at once).
        self._filling = False

    def factor(self, running: int | None = None) -> float:
        """The slowdown with ``running`` requests decoding (default: now):
        1 with none, ``slowdown`` with every slot taken, linear between."""
        busy = self.running if running is None else running
        share = min(max(busy, 0), self.max_running) / self.max_running
        return 1.0 + (self.slowdown - 1.0) * share

    def enter(self, now: float, on_start: Starter | None = None) -> Ticket:
        ticket = Ticket(self, now, on_start)
        if self.running < self.max_running and not self.waiting:
            self._run(ticket, now)
        elif len(self.waiting) < self.max_waiting:
            self.waiting.append(ticket)
        else:
            ticket.state = REFUSED
        return ticket

    def release(self, ticket: Ticket, now: float) -> None:
        """What ``ticket`` holds goes back: a slot (the next waiter starts,
        its ``on_start`` called before this returns) or its queue place.
        Releasing twice, or a refused ticket, does nothing."""
        if ticket.state == RUNNING:
            ticket.state = DONE
            self.running -= 1
            self.fill(now)
        elif ticket.state == WAITING:
            ticket.state = DONE
            self.waiting.remove(ticket)

    def fill(self, now: float, unbounded: bool = False) -> None:
        """Start waiters, first come first served, while slots are free
        (``unbounded``: every one of them, capacity being turned off)."""
        if self._filling:
            return  # an outer call is starting them; it sees this slot too
        self._filling = True
        try:
            while self.waiting and (unbounded or self.running < self.max_running):
                ticket = self.waiting.popleft()
                self._run(ticket, now)
                if ticket.on_start is not None:
                    ticket.on_start(ticket)
        finally:
            self._filling = False

    def _run(self, ticket: Ticket, now: float) -> None:
        # The others running when it joins set its pace.
        ticket.factor = self.factor()
        ticket.state = RUNNING
        ticket.start = now
        self.running += 1


class Capacity:
    """The pools of one server: the shared one and one per ``models`` entry.

    Kept across reloads (``configure``): requests in flight keep their
    tickets, and a pool's new limits apply to what comes next (a larger
    ``max_running`` starts waiters at once).
    """

    def __init__(self, config: CapacityConfig, now: float = 0.0) -> None:
        self.pools: dict[str, Pool] = {}
        self._by_model: dict[str, Pool] = {}
        self.configure(config, now)

    def configure(self, config: CapacityConfig, now: float) -> None:
        self.config = config
        self.enabled = config.enabled
        wanted = {SHARED: (config.max_running, config.max_waiting)}
        for pattern, entry in config.models.items():
            wanted[pattern] = (
                config.max_running if entry.max_running is None else entry.max_running,
                config.max_waiting if entry.max_waiting is None else entry.max_waiting,
            )
        old = self.pools
        pools: dict[str, Pool] = {}
        for name, (running, waiting) in wanted.items():
            pool = old.get(name) or Pool(name, running, waiting)
            pool.max_running, pool.max_waiting = running, waiting
            pool.slowdown = config.slowdown_at_capacity
            pools[name] = pool
        self.pools = pools
        self._by_model = {}
        # Waiters of a pool now gone, or of a server no longer limited, start
        # now; a pool that grew starts as many as it has room for.
        for name, pool in old.items():
            if name not in pools or not self.enabled:
                pool.fill(now, unbounded=True)
        for pool in pools.values():
            pool.fill(now)

    def pool(self, model: str) -> Pool:
        """The pool ``model`` runs in: exact entry, first glob, else shared."""
        found = self._by_model.get(model)
        if found is None:
            entries = {k: v for k, v in self.pools.items() if k != SHARED}
            found = for_model(entries, model) or self.pools[SHARED]
            if len(self._by_model) < _MAX_CACHED:
                self._by_model[model] = found
        return found

    def enter(self, model: str, now: float, on_start: Starter | None = None) -> Ticket:
        return self.pool(model).enter(now, on_start)

    def release(self, ticket: Ticket, now: float) -> None:
        ticket.pool.release(ticket, now)

    def factor(self, pool: Pool) -> float:
        return pool.factor()

    def refusal(self, ticket: Ticket, model: str) -> ApiError:
        """The error a refused request gets, with ``retry-after``."""
        status = self.config.refuse_status
        pool = ticket.pool
        busy = f"{pool.running} running, {len(pool.waiting)} waiting for {model}"
        if status == 503:
            message = (
                f"The engine is currently overloaded ({busy}), please try again later."
            )
        else:
            message = (
                f"The server is at capacity ({busy}): too many concurrent"
                " requests. Please retry after a short wait."
            )
        return ApiError(
            status,
            message,
            type="requests" if status == 429 else "server_error",
            code=REFUSAL_CODES[status],
            headers={
                "retry-after": str(RETRY_AFTER_S),
                "retry-after-ms": str(RETRY_AFTER_S * 1000),
            },
        )


def slowed_pacing(pacing: Pacing, factor: float, prefill_s: float) -> Pacing:
    """``pacing`` at ``factor`` times the latency, the first piece later
    by ``prefill_s`` as well."""
    return Pacing(
        pacing.first_s * factor + prefill_s,
        pacing.interval_s * factor,
        tuple(offset * factor for offset in pacing.offsets),
    )


def slowed(
    plan: Any, factor: float, prefill_ms_per_token: float, streamed: bool
) -> Any:
    """A reply plan as it runs at ``factor`` with its prompt's prefill cost:
    a stream's pacing, or a paced plain body's delay (an instant body, with
    ``timing.non_stream`` off, stays instant).  Plans without pacing
    (embeddings, moderations) and unslowed ones come back as they are."""
    pacing = getattr(plan, "pacing", None)
    usage = getattr(plan, "usage", None)
    if pacing is None or usage is None:
        return plan
    prefill_s = prefill_ms_per_token * usage.prompt_tokens / 1000.0
    if factor == 1.0 and prefill_s == 0.0:
        return plan
    if streamed:
        return dataclasses.replace(
            plan, pacing=slowed_pacing(pacing, factor, prefill_s)
        )
    delay_s: float = plan.delay_s
    if delay_s <= 0:
        return plan
    return dataclasses.replace(plan, delay_s=delay_s * factor + prefill_s)
