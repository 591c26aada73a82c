"""Paced streaming on the reactor: one shared ticker drives every open stream.

A per-stream LoopingCall collapses past a few hundred streams (missed ticks
are skipped silently and the token rate drops); one LoopingCall that, on
each tick, writes what every due stream owes holds the rate.  Events carry
the time they are due, so a late tick writes everything owed in one write
instead of drifting.  Each stream is a push producer: a client that stops
reading stops the feed, and a client that leaves is dropped at once.  A
stream whose events fail is ended with an error event and dropped alone:
the shared loop, and every other stream, go on.  A stream can also be ended
early with a given error (a graceful stop's deadline): its last event says why.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mockai_tw.errors import ApiError
from mockai_tw.fault_kinds import RESET, Action
from mockai_tw.hooks import Gaps, Hooks

log = Logger()

# A tick that ran longer than this many intervals is a server at capacity:
# there the chunks a stream owes by the next tick go out in one write, which
# is what holds the rate, and a catch-up pass would only cut them into more.
CATCH_UP_TICKS = 3

# How much one write may carry before the stream checks for backpressure.
MAX_BATCH_BYTES = 64 * 1024

Event = tuple[float, "bytes | Action"]


class Writable(Protocol):
    """The slice of ``twisted.web.server.Request`` a stream needs."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...


# What ends a stream whose own events failed (``Stream.fail``).
FAILED = ApiError(
    500, "The server had an error while processing your request.", type="server_error"
)


@implementer(IPushProducer)
class Stream:
    """One open SSE response: its pending events and its flow-control state.

    Slotted, and given shared callables rather than closures of its own:
    thousands stay open at once, most of them idle between two chunks.
    """

    __slots__ = (
        "bytes_written",
        "close_reason",
        "closed",
        "ending",
        "error_event",
        "events",
        "events_written",
        "failed",
        "gaps",
        "hooks",
        "last_write",
        "lazy",
        "origin",
        "paused",
        "pending",
        "queued",
        "request",
        "start",
        "taking",
        "ticker",
        "transport",
    )

    def __init__(
        self,
        request: Writable,
        events: Iterator[Event],
        start: float,
        transport: Any = None,
        hooks: Hooks | None = None,
        failed: Callable[[], bytes] | None = None,
        ending: Callable[[ApiError], bytes] | None = None,
        error_event: Callable[[ApiError, int], bytes] | None = None,
    ) -> None:
        self.request: Writable | None = request
        # The request as hooks name it, kept after the stream closes.
        self.origin: Any = request
        self.hooks = hooks
        # The bytes that end this stream when its events fail (an error event).
        self.failed = failed
        # The bytes that end it early with a given error (``end``); empty for
        # a body that has no way to say so.
        self.ending = ending
        # Or, for both: the provider's error event, given the error and how
        # many events were sent before it.
        self.error_event = error_event
        # For faults that end the connection (abortConnection, loseConnection).
        self.transport = transport
        self.events: Iterator[Event] | None = events
        # Events that tell when the next one is due without rendering it
        # (wire/chat.py TextStream) are rendered only once due.
        self.lazy = hasattr(events, "due_next")
        # And those that render every event due in one call (``take_due``)
        # are pumped by ``_take``; False: the general ``pump`` (tests).
        self.taking = self.lazy and hasattr(events, "take_due")
        self.start = start
        self.pending: Event | None = None
        self.paused = False
        self.closed = False
        # Whether the ticker's heap holds an entry for this stream.
        self.queued = False
        self.bytes_written = 0
        self.events_written = 0
        # Given by a ``first_chunk`` listener: where each later write's gap
        # since the one before (``last_write``, its clock) goes.
        self.gaps: Gaps | None = None
        self.last_write = 0.0
        self.ticker: Ticker | None = None
        # Why the stream ended: finished, disconnected or stopped.
        self.close_reason = ""

    def _failed_bytes(self) -> bytes | None:
        if self.failed is not None:
            return self.failed()
        if self.error_event is not None:
            return self.error_event(FAILED, self.events_written)
        return None

    def _ending_bytes(self, error: ApiError) -> bytes:
        if self.ending is not None:
            return self.ending(error)
        if self.error_event is not None:
            return self.error_event(error, self.events_written)
        return b""

    def _peek(self, now: float) -> Event | None:
        events: Any = self.events
        if self.pending is None and events is not None:
            if self.lazy:
                due = events.due_next()
                if due is not None and self.start + due > now:
                    # Not due yet: only its time, nothing rendered or held.
                    return due, b""
            self.pending = next(events, None)
        return self.pending

    def pump(self, now: float) -> float | None:
        """Write every event due by ``now``; return when the next one is due."""
        if self.taking and self.pending is None:
            return self._take(now)
        # Compare absolute times, exactly as the ticker's heap does: mixing
        # ``now - start`` with ``start + due`` rounds differently, and a stream
        # that is due by one measure but not the other would spin the tick.
        start = self.start
        while not self.paused and not self.closed:
            batch: list[bytes] = []
            size = 0
            event = self._peek(now)
            while (
                event is not None
                and start + event[0] <= now
                and size < MAX_BATCH_BYTES
                and not isinstance(event[1], Action)
            ):
                batch.append(event[1])
                size += len(event[1])
                self.pending = None
                try:
                    event = self._peek(now)
                except Exception:
                    # What was due still goes out before the stream fails.
                    self._write(batch)
                    raise
            if batch:
                self._write(batch)
            if event is None:
                self._complete()
                return None
            if start + event[0] > now:
                return start + event[0]
            if isinstance(event[1], Action):
                self._act(event[1])
                return None
        return None

    def _take(self, now: float) -> float | None:
        """``pump`` for events that render what is due in one call: the
        same writes, cut into the same batches, a batch's events rendered
        together instead of peeked at one by one.  Such events hold no
        actions (the faults' wrappers are plain iterators)."""
        events: Any = self.events
        start = self.start
        while not self.paused and not self.closed:
            batch: list[bytes] = []
            try:
                due: float | None = events.take_due(start, now, batch, MAX_BATCH_BYTES)
            except Exception:
                # What was due still goes out before the stream fails.
                if batch:
                    self._write(batch)
                raise
            if due is None:
                self._complete(batch)
                return None
            if len(batch) == 1:
                # ``_write`` inline for one event, a running stream's write
                # (open: the loop's test says so).
                request: Any = self.request
                data = batch[0]
                size = len(data)
                self.events_written += 1
                self.bytes_written += size
                request.write(data)
                gaps = self.gaps
                if gaps is None:
                    self.wrote(self.events_written == 1, size)
                else:
                    # ``wrote`` inline for a running stream's chunk.
                    at = gaps.seconds()
                    gap = at - self.last_write
                    self.last_write = at
                    amounts = gaps.amounts
                    amounts.append(gap if gap > 0.0 else 0.0)
                    if len(amounts) >= gaps.batch:
                        self._fold(gaps)
                    hooks = self.hooks
                    if hooks is not None and hooks.listeners["chunk"]:
                        hooks.emit("chunk", self.origin, size)
            elif batch:
                self._write(batch)
            at = start + due
            if at > now:
                return at
        return None

    def _write(self, batch: list[bytes]) -> None:
        assert self.request is not None
        data, first = self._counted(batch)
        self.request.write(data)
        self.wrote(first, len(data))

    def _counted(self, batch: list[bytes]) -> tuple[bytes, bool]:
        """``batch`` as one write, counted; and whether it is the first."""
        data = b"".join(batch)
        first = not self.events_written
        self.events_written += len(batch)
        self.bytes_written += len(data)
        return data, first

    def wrote(self, first: bool, size: int) -> None:
        """After a write of ``size`` bytes (the stream's ``first``, or not):
        its gap since the last, then the hooks."""
        gaps = self.gaps
        if gaps is not None:
            at = gaps.seconds()
            gap = at - self.last_write
            self.last_write = at
            amounts = gaps.amounts
            amounts.append(gap if gap > 0.0 else 0.0)
            if len(amounts) >= gaps.batch:
                self._fold(gaps)
        hooks = self.hooks
        if hooks is not None:
            listeners = hooks.listeners
            if first and listeners["first_chunk"]:
                hooks.emit("first_chunk", self.origin, size, self)
            if listeners["chunk"]:
                hooks.emit("chunk", self.origin, size)

    def _fold(self, gaps: Gaps) -> None:
        """A full batch of gaps to their measurer; its failure is not the
        stream's (as a hook's is not)."""
        try:
            gaps.fold(gaps.amounts)
        except Exception:
            log.failure("mockai: folding a stream's gaps failed")
            gaps.amounts.clear()

    def _act(self, action: Action) -> None:
        """End the connection as a fault says: reset, or close after what was sent."""
        transport = self.transport
        if action is RESET:
            self._close("reset")
            if transport is not None:
                transport.abortConnection()
            return
        self._complete()
        if transport is not None:
            transport.loseConnection()

    def _complete(self, last: list[bytes] | None = None) -> None:
        """Finish, after the ``last`` events if given: with a request that
        can (``finish_with``), they and the end of the body are one send."""
        request = self.request
        if not last:
            self._close("finished")
            if request is not None:
                request.unregisterProducer()
                request.finish()
            return
        assert request is not None
        data, first = self._counted(last)
        finish_with = getattr(request, "finish_with", None)
        if finish_with is None:
            request.write(data)
        # (with ``finish_with``, counted as it goes out: the hooks still hear
        # of the write before ``last_byte``)
        self.wrote(first, len(data))
        self._close("finished")
        request.unregisterProducer()
        if finish_with is None:
            request.finish()
        else:
            finish_with(data)

    def _close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = why
        self.request = None
        # The request holds its stream (``request.stream``): dropping the way
        # back leaves no cycle for the collector, which otherwise met every
        # finished stream with its request, headers and lists (60,000 objects
        # a collection under churn, a 40-120 ms pause).
        self.origin = None
        self.events = None
        self.pending = None
        if self.ticker is not None:
            self.ticker.discard(self, why)

    def fail(self) -> None:
        """Its events raised: end it with an error event, alone."""
        request = self.request
        if request is None or self.closed:
            return
        try:
            final = self._failed_bytes()
            if final is not None:
                request.write(final)
        finally:
            self._complete()
            self.close_reason = "failed"

    def end(self, error: ApiError) -> None:
        """End it now, before its events are done, and close the connection.

        A stream that can say why (``ending`` gives bytes: an SSE error event)
        writes that as its last event and ends properly; a paced plain body,
        which cannot, is cut off unfinished.
        """
        request = self.request
        if request is None or self.closed:
            return
        transport = self.transport
        final = b""
        try:
            final = self._ending_bytes(error)
            if final:
                request.write(final)
        finally:
            if final:
                self._complete()
            else:
                self._close("cut")
                request.unregisterProducer()
            self.close_reason = "cut"
            if transport is not None:
                transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        """The client went away: forget everything, write nothing more."""
        self._close("disconnected")

    # IPushProducer

    def pauseProducing(self) -> None:
        if not self.closed and not self.paused:
            self.paused = True
            if self.hooks is not None:
                self.hooks.emit("paused", self.origin)

    def resumeProducing(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            if self.hooks is not None:
                self.hooks.emit("resumed", self.origin)
            if self.ticker is not None:
                self.ticker.wake(self)

    def stopProducing(self) -> None:
        self._close("stopped")


class Ticker:
    """The shared pacing loop: runs while any stream is open, idle otherwise."""

    def __init__(self, clock: IReactorTime, tick_s: float) -> None:
        self.clock = clock
        self.tick_s = tick_s
        self.streams: set[Stream] = set()
        # The streams queued, as entries (due, order, stream) taken smallest
        # first, kept in two places: ``_run``, entries pushed in order (each
        # at or after the one before: streams of one pace, back to back,
        # push nearly every entry so), and ``_heap``, the rest.  The next
        # entry is the smaller of their heads, so they give the entries in
        # the order one heap would (``order`` makes each entry unique), but
        # an entry in the run costs a compare or two, not a heap's ~2 log n.
        self._heap: list[tuple[float, int, Stream]] = []
        self._run: deque[tuple[float, int, Stream]] = deque()
        self._order = itertools.count()
        self._loop: LoopingCall | None = None
        # A pass right after the reactor's next round of I/O, for what fell
        # due while a tick ran long (``_tick``).
        self._extra: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    def add(self, stream: Stream) -> None:
        """Start a stream: what is due now is written before this returns."""
        stream.ticker = self
        self.streams.add(stream)
        # ``wake``, one call less: every stream starts here.
        if stream.queued or stream.closed:
            return
        try:
            due = stream.pump(self.clock.seconds())
        except Exception:
            self._failed(stream)
            return
        if due is not None and not stream.paused:
            self._push(due, stream)

    def wake(self, stream: Stream) -> None:
        if stream.queued or stream.closed:
            return
        due = self._pump(stream, self.clock.seconds())
        if due is not None and not stream.paused:
            self._push(due, stream)

    def _pump(self, stream: Stream, now: float) -> float | None:
        """One stream's turn; its failure is its own."""
        try:
            return stream.pump(now)
        except Exception:
            self._failed(stream)
            return None

    def _failed(self, stream: Stream) -> None:
        """A stream's events raised (in ``pump``): it ends with an error
        event, alone; the loop and every other stream go on."""
        request_id = getattr(stream.origin, "request_id", None)
        log.failure(
            "mockai: a stream's events failed; it ends with an error"
            " (request {request_id})",
            request_id=request_id,
        )
        try:
            stream.fail()
        except Exception:
            log.failure(
                "mockai: ending a failed stream failed (request {request_id})",
                request_id=request_id,
            )
            stream.stopProducing()

    def _push(self, due: float, stream: Stream) -> None:
        stream.queued = True
        entry = (due, next(self._order), stream)
        run = self._run
        if not run or run[-1][0] <= due:
            # At or after the run's last (its order is larger): in order.
            run.append(entry)
        else:
            heapq.heappush(self._heap, entry)
        if self._loop is None:
            self._start()

    def _died(self, failure: Failure, loop: LoopingCall) -> None:
        # Not reached while _pump guards each stream; if it is, the next
        # stream starts a new loop instead of waiting on a dead one.
        log.failure("mockai: the stream ticker stopped", failure)
        if self._loop is loop:
            self._loop = None
            if self._heap or self._run:
                self._start()

    def _start(self) -> None:
        if self._loop is None:
            loop = self._loop = LoopingCall(self._tick)
            loop.clock = self.clock
            loop.start(self.tick_s, now=False).addErrback(self._died, loop)

    def discard(self, stream: Stream, why: str) -> None:
        self.streams.discard(stream)
        if not self.streams:
            self._heap.clear()
            self._run.clear()
            self._stop()

    def _stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        extra, self._extra = self._extra, None
        if extra is not None and extra.active():
            extra.cancel()

    def _catch_up(self) -> None:
        self._extra = None
        self._tick()

    def _tick(self) -> None:
        now = self.clock.seconds()
        heap, run = self._heap, self._run
        order = self._order
        heappop, heappush = heapq.heappop, heapq.heappush
        while True:
            # The smaller head of the two, if it is due.
            if run and not (heap and heap[0] < run[0]):
                if run[0][0] > now:
                    break
                _, _, stream = run.popleft()
            elif heap and heap[0][0] <= now:
                _, _, stream = heappop(heap)
            else:
                break
            stream.queued = False
            if stream.closed or stream.paused:
                continue
            # ``_pump`` and ``pump`` in one step for a stream ``_take`` serves
            # (every chunk of a running text stream comes here).
            if stream.taking and stream.pending is None:
                try:
                    due = stream._take(now)
                except Exception:
                    self._failed(stream)
                    continue
            else:
                due = self._pump(stream, now)
            if due is not None and not stream.paused:
                # ``_push`` inline (the loop runs: it is its tick).
                stream.queued = True
                if not run or run[-1][0] <= due:
                    run.append((due, next(order), stream))
                else:
                    heappush(heap, (due, next(order), stream))
        if not self.streams:
            self._stop()
            return
        # A tick that ran long (a big wave of streams, a collection) leaves
        # behind what fell due meanwhile.  The loop would serve it at its
        # next interval, up to a whole interval late; and a tick that late
        # serves more, runs longer and ends later still: under load the ticks
        # ratchet to 15-20 ms apart and every chunk waits that long (seen
        # under churn at 75% CPU).  It goes out after the reactor's next round
        # of I/O instead, and the passes shrink back to the loop's own.  Only
        # after a long tick, not after every one (that would serve a few
        # streams at a time, all the time), and not past CATCH_UP_TICKS (at
        # 2,000 streams it cost 7% more CPU and tripled time to first chunk).
        end = self.clock.seconds()
        if (
            self.tick_s < end - now <= CATCH_UP_TICKS * self.tick_s
            and self._extra is None
            and ((run and run[0][0] <= end) or (heap and heap[0][0] <= end))
        ):
            self._extra = self.clock.callLater(0, self._catch_up)

    def stop(self) -> None:
        """Shut down: close every stream and the loop (service stop)."""
        for stream in list(self.streams):
            stream.stopProducing()
        self._heap.clear()
        self._run.clear()
        self._stop()
