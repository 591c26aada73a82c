"""CPU per request in one process: mockai's Site against bare twisted.web's.

The same request bytes wrk sends are fed to a channel of each Site over an
in-memory transport, 20,000 at a time, so the figure is the application and
twisted.web's own work without the sockets and the reactor (which cost both
servers alike). Reps alternate between the servers; the report is the
median of each and their ratio, which is what bench.py's rps scenario
approaches minus the syscalls. Steadier than wrk on a shared machine, and a
profile (``--profile FILE``, cProfile) shows where mockai's extra goes.

    python benchmarks/inprocess.py [--requests 20000] [--reps 7] [--stream]
        [--no-journal] [--no-metrics] [--baseline DIR] [--profile FILE]

``--stream`` times stream starts instead: a new connection, a streaming
request and its first chunk written, 1,000 held open per rep (a burst's
work, the figure behind its time to first chunk).

Each server runs in a child process of its own, reps interleaved.
``--baseline DIR`` also measures the ``mockai_tw`` under DIR (a ``git
archive`` export). ``--profile FILE`` instead profiles mockai's reps here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8082\r\n"
    b"Content-Type: application/json\r\n"
    b"Authorization: Bearer sk-bench\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
) + BODY
STREAM_BODY = (
    b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
)
STREAM_REQUEST = REQUEST.split(b"Content-Length")[0] + (
    b"Content-Length: %d\r\n\r\n" % len(STREAM_BODY) + STREAM_BODY
)


def _channel(site: Any) -> tuple[Any, Any]:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = site.buildProtocol(peer)
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8082), peerAddress=peer
    )
    protocol.makeConnection(transport)
    return protocol, transport


def _rep(site: Any, requests: int) -> float:
    """µs per request over one keep-alive connection."""
    protocol, transport = _channel(site)
    feed, clear = protocol.dataReceived, transport.clear
    start = time.perf_counter()
    for _ in range(requests):
        feed(REQUEST)
        clear()
    return (time.perf_counter() - start) / requests * 1e6


def _config(journal: bool, metrics: bool) -> Any:
    from mockai_tw.config_load import parse_config

    return parse_config(
        {
            "access_token": "sk-bench",
            "seed": 1,
            "replies": [" ".join(f"word{i}" for i in range(50))],
            "stream": {"interval_ms": 20, "chunking": "word"},
            "journal": {"enabled": journal},
            "metrics": {"enabled": metrics},
        },
        {},
    )


def _mockai_site(journal: bool, metrics: bool) -> Any:
    from twisted.internet import reactor

    from mockai_tw.server import MockServer

    site = MockServer(_config(journal, metrics), reactor).site
    _check(site)
    return site


def _check(site: Any) -> bytes:
    protocol, transport = _channel(site)
    protocol.dataReceived(REQUEST)
    out: bytes = transport.value()
    if not out.startswith(b"HTTP/1.1 200 "):
        raise SystemExit(f"not a 200: {out[:300]!r}")
    return out.split(b"\r\n\r\n", 1)[1]


def _stream_bytes() -> bytes:
    """mockai's SSE body for the stream request (its clock run to the end),
    for the bare server to send."""
    from twisted.internet import task

    from mockai_tw.server import MockServer

    clock = task.Clock()
    protocol, transport = _channel(MockServer(_config(True, True), clock).site)
    protocol.dataReceived(STREAM_REQUEST)
    while b"\r\n0\r\n\r\n" not in transport.value():
        clock.advance(0.05)
    chunked = transport.value().partition(b"\r\n\r\n")[2]
    body = b""
    while True:
        size, _, rest = chunked.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return body
        body += rest[:n]
        chunked = rest[n + 2 :]


def _bare_site(body: bytes) -> Any:
    if TYPE_CHECKING:
        from benchmarks import bare_server
    else:  # run as a script: its own directory is on sys.path
        import bare_server

    plan = bare_server.schedule(_stream_bytes(), 50, 0.02)
    site = bare_server.QuietSite(
        bare_server.FixedChat(body, plan), parsePOSTFormSubmission=False
    )
    _check(site)
    return site


def _stream_rep(site: Any, requests: int) -> float:
    """µs per stream started (connection made, request read, first chunk
    written), the streams held open until the rep is timed, as in a burst."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    opened = []
    start = time.perf_counter()
    for _ in range(requests):
        protocol, transport = _channel(site)
        protocol.dataReceived(STREAM_REQUEST)
        opened.append((protocol, transport))
    elapsed = time.perf_counter() - start
    for protocol, transport in opened:
        if b"data: " not in transport.value():
            raise SystemExit(f"no first chunk: {transport.value()[:300]!r}")
        protocol.connectionLost(Failure(ConnectionDone()))
    return elapsed / requests * 1e6


def _counted(site: Any, requests: int, stream: bool) -> None:
    """``requests`` requests (or stream starts) inside ``deque``'s consuming
    loop, the one place ``--instructions`` counts; the collector as the
    daemon tunes it (mockai_tw/collector.py)."""
    import collections
    import gc

    from mockai_tw.collector import THRESHOLDS

    if stream:
        opened = []

        def one(_: int) -> None:
            protocol, transport = _channel(site)
            protocol.dataReceived(STREAM_REQUEST)
            opened.append((protocol, transport))

    else:
        protocol, transport = _channel(site)
        feed, clear = protocol.dataReceived, transport.clear

        def one(_: int) -> None:
            feed(REQUEST)
            clear()

    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    collections.deque(map(one, range(requests)), maxlen=0)


def _child(args: argparse.Namespace) -> None:
    """``--serve KIND``: one server's reps, each when told on stdin."""
    site = _mockai_site(not args.no_journal, not args.no_metrics)
    if args.serve == "bare":
        site = _bare_site(_check(site))
    rep = _stream_rep if args.stream else _rep
    if args.once:
        # Under callgrind: a warm-up, then the counted requests.
        rep(site, args.once // 4 or 1)
        _counted(site, args.once, args.stream)
        return
    for line in sys.stdin:
        if not line.strip():
            break
        print(json.dumps(rep(site, int(line))), flush=True)


class Server:
    """One server in a child process of its own, ``script --serve KIND``:
    each measures alike (the first version of this script timed one server
    in the parent, which ran ~15% slower than a child for reasons of its
    own). ticks.py's servers too."""

    def __init__(
        self, script: str, kind: str, flags: list[str], path: str | None
    ) -> None:
        env = dict(os.environ)
        if path is not None:
            env["PYTHONPATH"] = path
        self.process = subprocess.Popen(
            [sys.executable, script, "--serve", kind, *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def rep(self, requests: int) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{requests}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("a measuring child process failed")
        return float(json.loads(line))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def callgrind(
    script: str, kind: str, flags: list[str], path: str | None, once: int, toggle: str
) -> tuple[int, str]:
    """Instructions ``script --serve KIND --once N`` runs inside the C
    function ``toggle`` (callgrind; hash seed fixed), and what it printed:
    the same to within one instruction run to run, however busy the machine."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind")
    env = dict(os.environ, PYTHONHASHSEED="0")
    if path is not None:
        env["PYTHONPATH"] = path
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        printed = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={toggle}",
                f"--callgrind-out-file={out}",
                sys.executable,
                script,
                "--serve",
                kind,
                "--once",
                str(once),
                *flags,
            ],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ).stdout
        with open(out) as f:
            total = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    if total is None:
        raise SystemExit("no totals in callgrind's output")
    return int(total.group(1)), printed


def _flags(args: argparse.Namespace) -> list[str]:
    """The options a child process takes from this one."""
    return [
        flag
        for flag, on in (
            ("--no-journal", args.no_journal),
            ("--no-metrics", args.no_metrics),
            ("--stream", args.stream),
        )
        if on
    ]


def _report_instructions(args: argparse.Namespace) -> None:
    flags = _flags(args)
    requests = args.requests or (500 if args.stream else 2000)
    kinds: dict[str, tuple[str, str | None]] = {
        "mockai": ("mockai", None),
        "bare": ("bare", None),
    }
    if args.baseline:
        kinds["baseline"] = ("mockai", args.baseline)
    counts = {
        name: callgrind(__file__, kind, flags, path, requests, "consume_iterator")[0]
        / requests
        for name, (kind, path) in kinds.items()
    }
    what = "stream start" if args.stream else "request"
    print(
        f"instructions per {what} ({requests}):"
        + "".join(f"  {k} {v:,.0f}" for k, v in counts.items())
    )
    print(f"bare / mockai: {counts['bare'] / counts['mockai']:.3f}")
    if "baseline" in counts:
        print(f"mockai / baseline: {counts['mockai'] / counts['baseline']:.3f}")


def common_options(parser: argparse.ArgumentParser, instructions: str) -> None:
    """The options this script and ticks.py share (``instructions``: the
    help of ``--instructions``), and the two a child is run with."""
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-journal", action="store_true")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--baseline", help="a directory holding another mockai_tw")
    parser.add_argument(
        "--profile", help="profile mockai's reps in this process instead (cProfile)"
    )
    parser.add_argument("--instructions", action="store_true", help=instructions)
    parser.add_argument("--serve", choices=("mockai", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--once", type=int, default=0, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=0, help="per rep")
    parser.add_argument("--stream", action="store_true", help="time stream starts")
    common_options(
        parser, "count instructions per request instead (valgrind; ~2000 requests)"
    )
    args = parser.parse_args(argv)
    if args.serve:
        _child(args)
        return
    if args.instructions:
        _report_instructions(args)
        return
    requests = args.requests or (1000 if args.stream else 20000)
    if args.profile:
        import cProfile

        rep = _stream_rep if args.stream else _rep
        site = _mockai_site(not args.no_journal, not args.no_metrics)
        rep(site, requests // 10 or 1)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.reps):
            rep(site, requests)
        profiler.disable()
        profiler.dump_stats(args.profile)
        return
    flags = _flags(args)
    servers = {"mockai": Server(__file__, "mockai", flags, None)}
    servers["bare"] = Server(__file__, "bare", flags, None)
    if args.baseline:
        servers["baseline"] = Server(__file__, "mockai", flags, args.baseline)
    times: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for server in servers.values():
            server.rep(requests // 10 or 1)  # warm-up
        for _ in range(args.reps):
            for name, server in servers.items():
                times[name].append(server.rep(requests))
    finally:
        for server in servers.values():
            server.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    what = "stream started" if args.stream else "request"
    print(
        f"µs per {what} (median of {args.reps} x {requests}):"
        + "".join(f"  {k} {v:.1f}" for k, v in med.items())
    )
    print(f"bare / mockai: {med['bare'] / med['mockai']:.2f}", end="")
    if "baseline" in med:
        print(
            f"  bare / baseline: {med['bare'] / med['baseline']:.2f}"
            f"  baseline / mockai: {med['baseline'] / med['mockai']:.2f}",
            end="",
        )
    print()


if __name__ == "__main__":
    main()
