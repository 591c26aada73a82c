"""Several workers on one port: the supervisor's logic on a fake clock, and the
real ``twistd --workers=2`` with its signals, restarts and death.

The real-process tests wait on the parent's log lines, on its exit and on
HTTP answers, never on a sleep; only the check that workers died with a
SIGKILLed parent polls (a bounded loop), since nothing reports a grandchild's
death to the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
from dataclasses import replace
from typing import Any, cast

from prometheus_client.parser import text_string_to_metric_families

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, eventAsJSON
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mockai_tw.config import ConfigError
from mockai_tw.config_load import load_config
from mockai_tw.server import ListenService, MockServer
from mockai_tw.tap import configure, makeService
from mockai_tw.web.connections import SharedPort
from mockai_tw.worker import READY_KEY, ParentWatch, WorkerSpec
from mockai_tw.workers import (
    Address,
    Backoff,
    Launcher,
    Supervisor,
    WorkerProcess,
    cpus,
    parse_workers,
    resolve_address,
    worker_count,
)
from tests.support import TOKEN, start, write_config
from tests.test_daemon import SEED_CONFIG, TWISTD, environ

STARTED = re.compile(rb"worker (\d+) started \(pid (\d+)\)")
ALL_LISTENING = rb"2 workers listening on [\d.]+:(\d+)"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
AUTH: dict[bytes | str, bytes | str] = {"Authorization": "Bearer sk-seed-token"}
TOKEN_AUTH: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {TOKEN}"}


# --- the supervisor on a fake clock -----------------------------------------


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeLauncher(Launcher):
    """Spawns nothing: records each start; the test ends the processes (or,
    with ``fail_after``, each start fails that long after it)."""

    def __init__(self, clock: Clock, fail_after: float | None = None) -> None:
        self.clock = clock
        self.fail_after = fail_after
        self.started: list[tuple[int, WorkerProcess, FakeProcess]] = []
        self.ended: set[int] = set()
        self.closed = False

    def open(self) -> str:
        return "127.0.0.1:8082"

    def spawn(self, index: int, protocol: WorkerProcess) -> IProcessTransport:
        process = FakeProcess(1000 + len(self.started))
        if self.fail_after is not None:
            self.clock.callLater(self.fail_after, self.end, len(self.started))
        self.started.append((index, protocol, process))
        return cast(IProcessTransport, process)

    def close(self) -> None:
        self.closed = True

    def end(self, position: int, code: int | None = 1, sig: int | None = None) -> None:
        if position in self.ended:
            return
        self.ended.add(position)
        _index, protocol, _process = self.started[position]
        reason = (
            ProcessDone(0)
            if code == 0 and sig is None
            else ProcessTerminated(exitCode=code, signal=sig)
        )
        protocol.processEnded(Failure(reason))


class StoppableClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


def supervisor(
    case: TestCase, count: int = 1, fail_after: float | None = None
) -> tuple[Supervisor, FakeLauncher, StoppableClock]:
    """A started supervisor of fakes; stopped at cleanup, its workers ended."""
    clock = StoppableClock()
    launcher = FakeLauncher(clock, fail_after)
    sup = Supervisor(count, launcher, clock, signals=False)
    sup.startService()

    def stop() -> None:
        if sup.running:
            sup.stopService()
        for position in range(len(launcher.started)):
            launcher.end(position, code=0)

    case.addCleanup(stop)
    return sup, launcher, clock


class BackoffTests(TestCase):
    def test_doubles_to_the_cap_and_resets_after_a_steady_run(self) -> None:
        backoff = Backoff(first=0.5, most=30.0, steady_s=10.0)
        quick = [backoff.after(0.1) for _ in range(9)]
        self.assertEqual(quick, [0.5, 1, 2, 4, 8, 16, 30, 30, 30])
        self.assertEqual(backoff.after(10.0), 0.5)
        self.assertEqual(backoff.after(0.1), 1.0)


class SupervisorTests(TestCase):
    def test_a_worker_failing_at_start_does_not_spin(self) -> None:
        # Every start fails 0.2 s in (a port taken, a bad file, an import error).
        sup, launcher, clock = supervisor(self, fail_after=0.2)
        clock.pump([0.1] * 1200)  # two minutes
        # Starts at 0, 0.7, 1.9, 4.1, 8.3, 16.5, 32.7, 62.9 and 93.1 s: nine.
        self.assertEqual(len(launcher.started), 9)
        self.assertEqual(sup.workers[0].delays, [0.5, 1, 2, 4, 8, 16, 30, 30, 30])

    def test_a_worker_that_stayed_up_comes_back_quickly(self) -> None:
        sup, launcher, clock = supervisor(self, 2)
        for position in range(2):
            launcher.started[position][1].ready(position)
        clock.advance(3600)
        launcher.end(1, code=None, sig=signal.SIGKILL)
        self.assertEqual(sup.workers[1].delays, [0.5])
        clock.advance(0.5)
        self.assertEqual([i for i, _, _ in launcher.started], [0, 1, 1])
        self.assertIsNotNone(sup.workers[0].process)

    def test_sigterm_stops_every_worker_and_waits_for_them(self) -> None:
        sup, launcher, clock = supervisor(self, 2)
        sup.on_signal(signal.SIGTERM)
        self.assertEqual(clock.stopped, 1)  # the reactor stops: stopService runs
        stopped = sup.stopService()
        assert stopped is not None
        self.assertEqual([p.signals for _, _, p in launcher.started], [["TERM"]] * 2)
        launcher.end(0, code=0)
        self.assertNoResult(stopped)
        self.assertFalse(launcher.closed)
        launcher.end(1, code=None, sig=signal.SIGTERM)
        self.successResultOf(stopped)
        self.assertTrue(launcher.closed)
        # Nothing is started again.
        clock.advance(60)
        self.assertEqual(len(launcher.started), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_second_sigterm_kills_the_workers(self) -> None:
        sup, launcher, _clock = supervisor(self, 2)
        stopped = sup.stopService()
        sup.on_signal(signal.SIGINT)
        self.assertEqual(
            [p.signals for _, _, p in launcher.started], [["TERM", "KILL"]] * 2
        )
        launcher.end(0, code=None, sig=signal.SIGKILL)
        launcher.end(1, code=None, sig=signal.SIGKILL)
        self.successResultOf(cast(Deferred[None], stopped))

    def test_a_stop_cancels_a_pending_restart(self) -> None:
        sup, launcher, clock = supervisor(self, 1)
        launcher.end(0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertIsNone(sup.stopService())  # no worker left to wait for
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(launcher.closed)

    def test_a_port_it_cannot_take_stops_it_before_any_worker(self) -> None:
        clock = StoppableClock()
        launcher = FakeLauncher(clock)

        def taken() -> str:
            raise OSError(98, "Address already in use")

        launcher.open = taken  # type: ignore[method-assign]
        sup = Supervisor(2, launcher, clock, signals=False)
        sup.startService()
        self.assertEqual((launcher.started, clock.stopped), ([], 1))
        self.assertIsNone(sup.stopService())

    def test_sighup_goes_to_every_worker(self) -> None:
        sup, launcher, _clock = supervisor(self, 3)
        sup.on_signal(signal.SIGHUP)
        self.assertEqual([p.signals for _, _, p in launcher.started], [["HUP"]] * 3)


class WorkerOutputTests(TestCase):
    def test_events_are_republished_as_the_workers(self) -> None:
        published: list[dict[str, Any]] = []
        ready: list[int] = []
        ended: list[BaseException] = []
        protocol = WorkerProcess(
            1, ready.append, lambda i, why: ended.append(why), published.append
        )
        line = eventAsJSON(
            {
                "log_format": "mockai: config reloaded from {path}",
                "path": "/etc/mockai.yaml",
                "log_level": LogLevel.info,
                "log_namespace": "mockai_tw.server",
                "log_time": 1234.5,
            }
        ).encode()
        ready_line = eventAsJSON(
            {"log_format": "listening", "log_time": 1.0, READY_KEY: True}
        ).encode()
        data = line + b"\n" + ready_line + b"\n"
        for i in range(0, len(data), 7):  # in pieces, as a pipe delivers them
            protocol.outReceived(data[i : i + 7])
        protocol.errReceived(b"Traceback (most recent call last):\n  File")
        self.assertEqual(ready, [1])
        self.assertEqual(len(published), 2)
        first = published[0]
        self.assertEqual(first["worker"], 1)
        self.assertEqual(first["log_system"], "worker-1")
        self.assertEqual(first["path"], "/etc/mockai.yaml")
        self.assertEqual(first["log_level"], LogLevel.info)
        self.assertEqual(first["log_time"], 1234.5)
        self.assertEqual(published[1]["line"], "Traceback (most recent call last):")
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(published[2]["line"], "  File")
        self.assertEqual(len(ended), 1)

    def test_a_line_without_an_end_is_bounded(self) -> None:
        published: list[dict[str, Any]] = []
        protocol = WorkerProcess(0, lambda i: None, lambda i, w: None, published.append)
        protocol.errReceived(b"x" * (3 * 1024 * 1024 + 5))
        self.assertEqual(len(published), 3)
        self.assertEqual(len(protocol.pending[2]), 5)


class ParentWatchTests(TestCase):
    async def test_the_parent_pipe_closing_is_noticed(self) -> None:
        # A worker's stdin: only the parent holds the other end.
        read, write = os.pipe()
        gone: Deferred[None] = Deferred()
        watch = ParentWatch(read, lambda: gone.callback(None))
        reactor.addReader(watch)
        self.addCleanup(os.close, read)
        self.addCleanup(reactor.removeReader, watch)
        os.write(write, b"noise is read and ignored")
        os.close(write)
        await gone
        self.assertNotIn(watch, reactor.getReaders())


class OptionTests(TestCase):
    def test_workers_counts(self) -> None:
        self.assertEqual(parse_workers("auto"), 0)
        self.assertEqual(parse_workers("4"), 4)
        for bad in ("", "-1", "many", "1025"):
            with self.assertRaises(ConfigError) as raised:
                parse_workers(bad)
            self.assertTrue(str(raised.exception).startswith("--workers: "))

    def test_auto_from_the_file_and_the_environment(self) -> None:
        path = write_config(self, {"access_token": TOKEN, "workers": "auto"})
        config = load_config(path, {})
        self.assertEqual(config.workers, 0)
        self.assertEqual(worker_count(config), len(os.sched_getaffinity(0)))
        self.assertEqual(cpus(), len(os.sched_getaffinity(0)))
        self.assertEqual(load_config(path, {"MOCKAI_WORKERS": "3"}).workers, 3)
        plain = write_config(self, {"access_token": TOKEN})
        self.assertEqual(load_config(plain, {}).workers, 1)
        self.assertEqual(load_config(plain, {"MOCKAI_WORKERS": "auto"}).workers, 0)
        with self.assertRaises(ConfigError):
            load_config(plain, {"MOCKAI_WORKERS": "lots"})
        # --workers wins over both.
        options = {"config": path, "workers": "2"}
        self.assertEqual(configure(options, {"MOCKAI_WORKERS": "3"}).workers, 2)

    def test_endpoints(self) -> None:
        self.assertEqual(
            resolve_address("tcp:port=0:interface=127.0.0.1:backlog=7"),
            Address("127.0.0.1", 0, 7),
        )
        self.assertEqual(resolve_address("tcp:8082"), Address("", 8082, 50))
        six = resolve_address("tcp6:8082:interface=\\:\\:1")
        self.assertEqual((six.interface, six.where()), ("::1", "::1:8082"))
        with self.assertRaises(ConfigError) as raised:
            resolve_address("unix:/tmp/mockai.sock")
        self.assertIn("several workers need a tcp:", str(raised.exception))

    def test_worker_spec_round_trip(self) -> None:
        for spec in (
            WorkerSpec(0, 123, SharedPort(port=8082)),
            WorkerSpec(7, 9, SharedPort(fd=3)),
        ):
            self.assertEqual(WorkerSpec.parse(spec.argument()), spec)
        with self.assertRaises(ConfigError):
            WorkerSpec.parse("0:1:pipe=2")

    def test_one_worker_is_the_single_process(self) -> None:
        path = write_config(self, {"access_token": TOKEN})
        single: Any = makeService({"config": path}, reactor, {})
        self.assertTrue(hasattr(single, "listener"))
        self.assertFalse(hasattr(single, "supervisor"))
        several: Any = makeService(
            {"config": path, "workers": "3", "listen": "tcp:0"}, reactor, {}
        )
        self.assertEqual(several.supervisor.count, 3)
        self.assertFalse(hasattr(several, "listener"))


class HeaderTests(TestCase):
    async def test_a_single_process_sends_no_worker_header(self) -> None:
        live = await start(self)
        response, body = await live.json("GET", "/health")
        self.assertEqual(body["worker"], 0)
        self.assertIsNone(response.headers.getRawHeaders("x-mockai-worker"))

    async def test_a_worker_names_itself_on_every_response(self) -> None:
        path = write_config(self, {"access_token": TOKEN})
        config = replace(load_config(path, {}), workers=2)
        server = MockServer(config, reactor, worker=1)
        listener = ListenService(server, "tcp:0:interface=127.0.0.1", reactor)
        listener.startService()
        self.addCleanup(listener.stopService)
        port = cast(Any, (await listener.listening).getHost()).port
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(server.site.quiet)
        self.addCleanup(pool.closeCachedConnections)
        url = f"http://127.0.0.1:{port}"
        health = await treq.get(url + "/health", pool=pool)
        self.assertEqual(json.loads(await treq.content(health))["worker"], 1)
        chat = await treq.post(
            url + "/v1/chat/completions",
            json=CHAT,
            headers=TOKEN_AUTH,
            pool=pool,
        )
        await treq.content(chat)
        missing = await treq.get(url + "/nowhere", pool=pool)
        await treq.content(missing)
        for response in (health, chat, missing):
            self.assertEqual(response.headers.getRawHeaders("x-mockai-worker"), ["1"])


# --- the real twistd --------------------------------------------------------


class Parent(ProcessProtocol):
    """The supervising twistd: its output, Deferreds for log lines, its exit."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int | None] = Deferred()
        self._waiting: list[tuple[bytes, int, Deferred[list[re.Match[bytes]]]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        for entry in list(self._waiting):
            pattern, count, d = entry
            found = list(re.finditer(pattern, self.out))
            if len(found) >= count:
                self._waiting.remove(entry)
                d.callback(found)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def logged(self, pattern: bytes, count: int = 1) -> Deferred[list[re.Match[bytes]]]:
        """Fires with the matches once ``pattern`` has been logged ``count``
        times (fails if the parent exits first)."""
        d: Deferred[list[re.Match[bytes]]] = Deferred()
        self._waiting.append((pattern, count, d))
        self.outReceived(b"")
        return d

    def pids(self) -> dict[int, int]:
        """Each worker's latest pid."""
        return {int(i): int(pid) for i, pid in STARTED.findall(self.out)}

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code = (
            value.exitCode
            if isinstance(value, (ProcessDone, ProcessTerminated))
            else None
        )
        waiting, self._waiting = self._waiting, []
        for pattern, _count, d in waiting:
            d.errback(
                AssertionError(
                    f"exited ({code}) before logging {pattern!r}:"
                    f" {self.out[-3000:]!r} {self.err[-2000:]!r}"
                )
            )
        self.ended.callback(code)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


class WorkerDaemonTests(TestCase):
    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.path = os.path.join(self.workdir, "config.yaml")

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    async def spawn(
        self,
        *extra: str,
        config: str = SEED_CONFIG,
        env: dict[str, str] | None = None,
    ) -> tuple[Parent, int]:
        """Start ``twistd -n mockai --workers=2``; returns it and its port once
        both workers listen. Cleanup stops it, then kills any worker left."""
        self.write(config)
        parent = Parent()
        argv = [TWISTD, "-n", "--pidfile=", "mockai", f"--config={self.path}"]
        process = reactor.spawnProcess(
            parent,
            TWISTD,
            [*argv, "--workers=2", *extra],
            env={**environ(), **(env or {})},
            path=self.workdir,
        )
        self.process = process

        async def stop() -> None:
            if not parent.ended.called:
                process.signalProcess("TERM")
                await parent.ended
            for pid in parent.pids().values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)

        self.addCleanup(stop)
        (match,) = await parent.logged(ALL_LISTENING)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        return parent, int(match.group(1))

    async def answers(self, port: int, requests: int = 200) -> list[int]:
        """GET /health on fresh connections until both workers have answered
        (at most ``requests``); the workers that answered, in order."""
        seen: list[int] = []
        for _ in range(requests):
            response = await treq.get(f"http://127.0.0.1:{port}/health", pool=self.pool)
            body = json.loads(await treq.content(response))
            self.assertEqual(response.code, 200)
            self.assertEqual(
                response.headers.getRawHeaders("x-mockai-worker"), [str(body["worker"])]
            )
            seen.append(body["worker"])
            if set(seen) == {0, 1}:
                break
        return seen

    async def reply(self, port: int) -> tuple[int, str]:
        response = await treq.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=CHAT,
            headers=AUTH,
            pool=self.pool,
        )
        body = json.loads(await treq.content(response))
        self.assertEqual(response.code, 200, body)
        worker = int(response.headers.getRawHeaders("x-mockai-worker")[0])
        return worker, body["choices"][0]["message"]["content"]

    async def test_two_workers_answer_on_one_port(self) -> None:
        parent, port = await self.spawn()
        self.assertEqual(set(await self.answers(port)), {0, 1})
        worker, _text = await self.reply(port)
        self.assertIn(worker, (0, 1))
        self.assertEqual(sorted(parent.pids()), [0, 1])
        self.assertIn(b"(reuseport)", parent.out)
        self.assertNotIn(b"Traceback", parent.out + parent.err)

    async def test_metrics_are_the_whole_servers_from_either_worker(self) -> None:
        # Short, like /run/user/N: a socket's path has at most 107 bytes.
        runtime = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, runtime, True)
        parent, port = await self.spawn(env={"XDG_RUNTIME_DIR": runtime})
        (made,) = os.listdir(runtime)  # the run's own directory
        sent: dict[int, int] = {0: 0, 1: 0}
        for _ in range(200):
            worker, _text = await self.reply(port)
            sent[worker] += 1
            if min(sent.values()) >= 2 and sum(sent.values()) >= 6:
                break
        self.assertGreaterEqual(min(sent.values()), 1, sent)
        scraped: set[int] = set()
        for _ in range(200):
            response = await treq.get(
                f"http://127.0.0.1:{port}/metrics", pool=self.pool
            )
            text = (await treq.content(response)).decode()
            self.assertEqual(response.code, 200, text)
            scraped.add(int(response.headers.getRawHeaders("x-mockai-worker")[0]))
            total = 0.0
            workers = 0.0
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (
                        sample.name == "mockai_requests_total"
                        and sample.labels["endpoint"] == "chat"
                    ):
                        self.assertEqual(sample.labels["status"], "200")
                        total += sample.value
                    if sample.name == "mockai_metrics_workers":
                        workers = sample.value
            self.assertEqual(total, sum(sent.values()))
            self.assertEqual(workers, 2.0)
            if scraped == {0, 1}:
                break
        self.assertEqual(scraped, {0, 1})
        process_ended = parent.ended
        self.process.signalProcess("TERM")
        self.assertEqual(await process_ended, 0)
        # Removed with the parent.
        self.assertNotIn(made, os.listdir(runtime))

    async def test_the_inherited_socket_serves_too(self) -> None:
        parent, port = await self.spawn("--worker-socket=inherited")
        self.assertIn(b"(inherited)", parent.out)
        for worker in await self.answers(port, requests=20):
            self.assertIn(worker, (0, 1))

    async def test_a_killed_worker_is_replaced(self) -> None:
        parent, port = await self.spawn()
        old = parent.pids()[0]
        os.kill(old, signal.SIGKILL)
        await parent.logged(rb"worker 0 \(pid %d\) was killed by SIGKILL" % old)
        # Until it is back, the other worker answers everything.
        for _ in range(5):
            self.assertEqual(await self.answers(port, requests=1), [1])
        (again,) = await parent.logged(rb"worker 0 \(pid (\d+)\) listening again")
        new = int(again.group(1))
        self.assertNotEqual(new, old)
        self.assertEqual(parent.pids()[0], new)
        self.assertEqual(set(await self.answers(port)), {0, 1})

    async def test_sighup_with_a_bad_file_keeps_the_old_config_everywhere(self) -> None:
        good = SEED_CONFIG + 'replies: ["the old reply"]\n'
        parent, port = await self.spawn(config=good)
        self.write(good + "stream:\n  interval_ms: -1\n")
        self.process.signalProcess("HUP")
        refused = await parent.logged(
            rb"\[worker-(\d)\] mockai: config not reloaded, old config kept:"
            rb" stream.interval_ms: must be >= 0",
            count=2,
        )
        self.assertEqual(sorted(m.group(1) for m in refused), [b"0", b"1"])
        answered: dict[int, str] = {}
        while len(answered) < 2:
            worker, text = await self.reply(port)
            answered[worker] = text
        self.assertEqual(answered, {0: "the old reply", 1: "the old reply"})
        # A good file is taken by every worker.
        self.write(SEED_CONFIG + 'replies: ["the new reply"]\n')
        self.process.signalProcess("HUP")
        await parent.logged(rb"\[worker-\d\] mockai: config reloaded", count=2)
        answered = {}
        while len(answered) < 2:
            worker, text = await self.reply(port)
            answered[worker] = text
        self.assertEqual(answered, {0: "the new reply", 1: "the new reply"})

    async def test_sigterm_exits_0_after_the_workers(self) -> None:
        parent, _port = await self.spawn()
        pids = parent.pids()
        self.process.signalProcess("TERM")
        self.assertEqual(await parent.ended, 0)
        out = parent.out
        last = out.rindex(b"Server Shut Down")
        for index, pid in pids.items():
            line = re.search(
                rb"worker %d \(pid %d\) (was killed|exited)" % (index, pid), out
            )
            assert line is not None, out[-3000:]
            self.assertLess(line.start(), last)
            self.assertFalse(alive(pid))
        self.assertNotIn(b"Traceback", out + parent.err)

    async def test_no_worker_outlives_a_killed_parent(self) -> None:
        # A killed parent cannot remove the directories it made (its runtime
        # directory, the workers' files directory): they go in this test's.
        scratch = os.path.abspath(self.mktemp())
        os.makedirs(scratch)
        env = {"TMPDIR": scratch, "XDG_RUNTIME_DIR": ""}
        parent, _port = await self.spawn(env=env)
        pids = list(parent.pids().values())
        self.process.signalProcess("KILL")
        await parent.ended
        # Nothing tells this test when its grandchildren die: poll, bounded.
        for _ in range(200):
            if not any(alive(pid) for pid in pids):
                break
            await deferLater(reactor, 0.05)
        self.assertEqual([pid for pid in pids if alive(pid)], [])
