"""CPU per paced chunk once streams run: mockai's ticker against bare twisted.web.

Issue #17's third target (1,000 streams of 50 chunks every 20 ms, back to
back) is bound by what each chunk costs after its stream started: the
ticker's turn, the chunk rendered, framed and sent, the metrics' gap.  Here
``--streams`` streaming requests (1,000) are opened on a Site driven by a
fake clock (``HeapClock``), their starts spread over one chunk interval as
back-to-back load spreads them, and the clock is then advanced tick by tick.
Each connection is a real ``tcp.Server`` on a socket that takes every send
(``daemon_transport``): the bytes take the daemon's write path -- mockai's
queue sent at the round's end, Twisted's write event for bare twisted.web --
less the system calls (``--memory``: ``StringTransport``s instead, which
both paths bypass).  Only the ticks between the last start and the first
stream's end are timed (CPU time, ``time.process_time``): what is left is
the steady per-chunk work, divided by the chunks (sends) those ticks made.
Starts and ends are ``inprocess.py --stream``'s and the rest of the
pipeline's business.

    python benchmarks/ticks.py [--streams 1000] [--reps 7] [--no-journal]
        [--no-metrics] [--gc-off] [--no-bare] [--memory] [--baseline DIR]
        [--profile FILE] [--instructions]

Each server runs in a child process of its own, reps interleaved, and the
report is each one's median and their ratios.  The bare server is
bare_server.py's (one ``callLater`` per stream and pre-encoded chunks) on
the same clock.  ``--baseline DIR`` also measures the ``mockai_tw`` under
DIR (``git archive <rev> mockai_tw | tar -x -C DIR``).  ``--profile FILE``
instead profiles mockai's reps here (cProfile).  ``--gc-off`` times with
the garbage collector off (steadier; the default keeps it on, as the
daemon runs).  ``--instructions`` counts instructions per chunk instead
(valgrind's callgrind, counting inside the timed loop alone, hash seed
fixed): the same figure run after run on a busy machine, at ~100 s a
server for 200 streams.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import json
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat, starmap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if TYPE_CHECKING:
    from benchmarks import bare_server, inprocess
else:  # run as a script: its own directory is on sys.path
    import bare_server
    import inprocess

INTERVAL_S = 0.02  # inprocess._config's stream interval
CHUNKS = 50  # and its reply's words
TICK_S = 0.005  # the ticker's default resolution (config stream.tick_ms)
START = 1732440000.0


class Sink(StringTransport):
    """An in-memory transport that counts its writes and keeps only the last
    (a rep's streams would otherwise hold tens of megabytes)."""

    def __init__(self) -> None:
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8082), peerAddress=peer
        )
        self.writes = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))


class FakeSocket:
    """What a ``tcp.Server`` asks of its socket here: every send taken whole,
    counted, the last kept; no system call."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""

    def send(self, data: bytes | memoryview) -> int:
        # (Twisted's write event sends a memoryview of its buffer.)
        self.writes += 1
        self.last = data if type(data) is bytes else bytes(data)
        return len(data)

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8082)

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 40000)


class FakeReactor:
    """The reactor a ``tcp.Server`` is given: its timers on the rep's clock,
    its reader and writer registrations ignored (the sockets never block)."""

    def __init__(self, clock: HeapClock) -> None:
        self.callLater = clock.callLater
        self.seconds = clock.seconds
        self._writers: set[Any] = set()

    def addReader(self, reader: Any) -> None:
        pass

    def removeReader(self, reader: Any) -> None:
        pass

    def addWriter(self, writer: Any) -> None:
        # The write event, at the end of the round (the socket is always
        # writable): Twisted's own write path, as bare twisted.web takes it.
        if writer not in self._writers:
            self._writers.add(writer)
            self.callLater(0, self._writable, writer)

    def removeWriter(self, writer: Any) -> None:
        self._writers.discard(writer)

    def _writable(self, writer: Any) -> None:
        if writer in self._writers and writer.connected:
            writer.doWrite()


class _Port:
    """The listening port a ``tcp.Server`` names (its ``_realPortNumber``)."""

    _realPortNumber = 8082


def daemon_transport(protocol: Any, clock: HeapClock, session: int) -> Any:
    """A real ``tcp.Server`` around a ``FakeSocket``: the daemon's own write
    paths (mockai's ``GuardedChannel.send_now`` and the round's sends,
    Twisted's write event for bare twisted.web), which a ``StringTransport``
    would bypass, less the system calls."""
    from twisted.internet import tcp

    return tcp.Server(
        FakeSocket(),  # type: ignore[arg-type]
        protocol,
        ("127.0.0.1", 40000),
        _Port(),  # type: ignore[arg-type]
        session,
        FakeReactor(clock),  # type: ignore[arg-type]
    )


class _Call:
    """A delayed call of ``HeapClock``."""

    __slots__ = ("args", "called", "cancelled", "clock", "func", "time")

    def __init__(
        self, clock: HeapClock, time: float, func: Callable[..., Any], args: Any
    ) -> None:
        self.clock = clock
        self.time = time
        self.func = func
        self.args = args
        self.called = False
        self.cancelled = False

    def active(self) -> bool:
        return not (self.called or self.cancelled)

    def cancel(self) -> None:
        self.cancelled = True

    def getTime(self) -> float:
        return self.time

    def reset(self, seconds: float) -> None:
        # The heap's old entry is skipped: its time is no longer the call's.
        self.time = self.clock.now + seconds
        self.clock.push(self)

    def delay(self, seconds: float) -> None:
        self.time += seconds
        self.clock.push(self)


class HeapClock:
    """``callLater`` on a heap, as the reactor keeps it.

    ``task.Clock`` sorts every call it holds at each ``callLater`` and
    ``advance``; with a timer per connection that sort was a third of a
    rep, which the reactor's heap does not cost.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[tuple[float, int, _Call]] = []
        self.order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def push(self, call: _Call) -> None:
        heapq.heappush(self.calls, (call.time, next(self.order), call))

    def callLater(self, delay: float, func: Callable[..., Any], *args: Any) -> _Call:
        call = _Call(self, self.now + delay, func, args)
        self.push(call)
        return call

    def getDelayedCalls(self) -> list[_Call]:
        return [c for t, _, c in self.calls if c.active() and c.time == t]

    def advance(self, amount: float) -> None:
        self.now += amount
        calls = self.calls
        while calls and calls[0][0] <= self.now:
            when, _, call = heapq.heappop(calls)
            if call.active() and call.time == when:
                call.called = True
                call.func(*call.args)


def _mockai(journal: bool, metrics: bool) -> tuple[Any, Any]:
    from mockai_tw.server import MockServer

    clock = HeapClock()
    clock.advance(START)
    site = MockServer(inprocess._config(journal, metrics), clock).site  # type: ignore[arg-type]
    inprocess._check(site)
    return site, clock


def _bare(journal: bool, metrics: bool) -> tuple[Any, Any]:
    mockai, _ = _mockai(journal, metrics)
    clock = HeapClock()
    clock.advance(START)
    bare_server.clock = clock  # type: ignore[assignment]
    plan = bare_server.schedule(inprocess._stream_bytes(), CHUNKS, INTERVAL_S)
    site = bare_server.QuietSite(
        bare_server.FixedChat(inprocess._check(mockai), plan),
        parsePOSTFormSubmission=False,
    )
    inprocess._check(site)
    return site, clock


def _rep(
    site: Any, clock: Any, streams: int, gc_off: bool, memory: bool = False
) -> tuple[float, int]:
    """CPU seconds and chunks of the steady ticks of ``streams`` streams
    (``memory``: over ``Sink``, not ``daemon_transport``)."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    # Each stream's protocol, where its bytes are counted, and its transport.
    opened: list[tuple[Any, Sink | FakeSocket, Any]] = []
    starts = round(INTERVAL_S / TICK_S)
    for group in range(starts):
        for _ in range(streams * (group + 1) // starts - len(opened)):
            protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
            if memory:
                transport: Any = Sink()
                sink: Sink | FakeSocket = transport
            else:
                transport = daemon_transport(protocol, clock, len(opened))
                sink = transport.socket
            protocol.makeConnection(transport)
            protocol.dataReceived(inprocess.STREAM_REQUEST)
            opened.append((protocol, sink, transport))
        clock.advance(TICK_S)
    # Every stream started within one interval: the last ends (CHUNKS - 1)
    # intervals after its start; the first a little earlier.
    steady = round((CHUNKS - 2) * INTERVAL_S / TICK_S) - starts
    before = sum(sink.writes for _, sink, _ in opened)
    gc.collect()
    if gc_off:
        gc.disable()
    cpu = time.process_time()
    # The loop in C (``starmap``): ``--instructions`` counts inside it alone.
    deque(starmap(clock.advance, repeat((TICK_S,), steady)), maxlen=0)
    cpu = time.process_time() - cpu
    gc.enable()
    chunks = sum(sink.writes for _, sink, _ in opened) - before
    for _ in range(4 * starts):
        clock.advance(TICK_S)
    for protocol, sink, transport in opened:
        if not sink.last.endswith(b"0\r\n\r\n"):
            raise SystemExit(f"a stream did not end: {sink.last[-200:]!r}")
        transport.connected = False
        protocol.connectionLost(Failure(ConnectionDone()))
    if chunks < streams * (CHUNKS - 4):
        raise SystemExit(f"only {chunks} chunks in the steady ticks")
    return cpu, chunks


def _child(args: argparse.Namespace) -> None:
    """``--serve KIND``: one server's reps, each when told on stdin."""
    make = _bare if args.serve == "bare" else _mockai
    site, clock = make(not args.no_journal, not args.no_metrics)
    if args.once:
        # Under callgrind: a warm-up, one rep, and its chunks.
        _rep(site, clock, args.once // 10 or 1, args.gc_off, args.memory)
        chunks = _rep(site, clock, args.once, args.gc_off, args.memory)[1]
        print(json.dumps(chunks), flush=True)
        return
    for line in sys.stdin:
        if not line.strip():
            break
        cpu, chunks = _rep(site, clock, int(line), args.gc_off, args.memory)
        print(json.dumps(cpu / chunks * 1e6), flush=True)


def _instructions(kind: str, flags: list[str], path: str | None, streams: int) -> float:
    """Instructions per chunk of the steady ticks of one rep (counting only
    inside the timed ``starmap``)."""
    total, chunks = inprocess.callgrind(
        __file__, kind, flags, path, streams, "starmap_next"
    )
    return total / int(chunks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000, help="per rep")
    parser.add_argument("--gc-off", action="store_true", help="time with gc off")
    parser.add_argument("--no-bare", action="store_true", help="skip bare twisted")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="over in-memory transports (the figures before the daemon's write path)",
    )
    inprocess.common_options(
        parser, "count instructions per chunk instead (valgrind; use ~200 streams)"
    )
    args = parser.parse_args(argv)
    if args.serve:
        _child(args)
        return
    if args.profile:
        import cProfile

        site, clock = _mockai(not args.no_journal, not args.no_metrics)
        _rep(site, clock, args.streams // 10 or 1, args.gc_off, args.memory)
        profiler = cProfile.Profile()
        # Only the steady ticks: enabled around clock.advance's timed loop
        # would need hooks in _rep; the starts and ends are a small share.
        profiler.enable()
        for _ in range(args.reps):
            _rep(site, clock, args.streams, args.gc_off, args.memory)
        profiler.disable()
        profiler.dump_stats(args.profile)
        return
    flags = [
        flag
        for flag, on in (
            ("--no-journal", args.no_journal),
            ("--no-metrics", args.no_metrics),
            ("--gc-off", args.gc_off),
            ("--memory", args.memory),
        )
        if on
    ]
    if args.instructions:
        kinds = {"mockai": ("mockai", None)}
        if not args.no_bare:
            kinds["bare"] = ("bare", None)
        if args.baseline:
            kinds["baseline"] = ("mockai", args.baseline)
        counts = {
            name: _instructions(kind, flags, path, args.streams)
            for name, (kind, path) in kinds.items()
        }
        print(
            f"instructions per chunk, steady ticks ({args.streams} streams):"
            + "".join(f"  {k} {v:,.0f}" for k, v in counts.items())
        )
        if "baseline" in counts:
            print(f"mockai / baseline: {counts['mockai'] / counts['baseline']:.3f}")
        return
    servers = {"mockai": inprocess.Server(__file__, "mockai", flags, None)}
    if not args.no_bare:
        servers["bare"] = inprocess.Server(__file__, "bare", flags, None)
    if args.baseline:
        servers["baseline"] = inprocess.Server(__file__, "mockai", flags, args.baseline)
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.rep(args.streams // 10 or 1)  # warm-up
        for _ in range(args.reps):
            for name, server in servers.items():
                times[name].append(server.rep(args.streams))
    finally:
        for server in servers.values():
            server.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"CPU µs per chunk, steady ticks (median of {args.reps} x {args.streams}"
        f" streams{', gc off' if args.gc_off else ''}):"
        + "".join(f"  {k} {v:.2f}" for k, v in med.items())
    )
    ratios = (
        [f"bare / mockai: {med['bare'] / med['mockai']:.2f}"] if "bare" in med else []
    )
    if "baseline" in med:
        ratios.append(f"mockai / baseline: {med['mockai'] / med['baseline']:.2f}")
    print("  ".join(ratios))
    print(
        "reps: "
        + "  ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items())
    )


if __name__ == "__main__":
    main()
