"""The real ``twistd`` in a subprocess: plugin, Dockerfile command, bad configs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.openapi import validate

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
SEED_CONFIG = """\
http:
  host: 127.0.0.1
  port: 0
  mode: release
access_token: sk-seed-token
"""
AUTH: dict[bytes | str, bytes | str] = {"Authorization": "Bearer sk-seed-token"}
LISTENING = re.compile(rb"listening on [\d.]+:(\d+)")
# The supervisor's line once every worker listens.
ALL_LISTENING = re.compile(rb"\d+ workers listening on [\d.]+:(\d+)")


class Twistd(ProcessProtocol):
    """Collects output; fires ``port`` on the listening line, ``ended`` at exit."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.port: Deferred[int] = Deferred()
        # With --workers: fires once every worker listens.
        self.all_listening: Deferred[int] = Deferred()
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        match = LISTENING.search(self.out)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))
        match = ALL_LISTENING.search(self.out)
        if match and not self.all_listening.called:
            self.all_listening.callback(int(match.group(1)))

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        for waiting in (self.port, self.all_listening):
            if not waiting.called:
                waiting.errback(
                    RuntimeError(f"twistd exited: {self.out!r} {self.err!r}")
                )
                waiting.addErrback(lambda _: None)
        code = (
            reason.value.exitCode
            if isinstance(reason.value, (ProcessDone, ProcessTerminated))
            else None
        )
        self.ended.callback(code)


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MOCKAI_")}


def spawn_twistd(case: TestCase, workdir: str, *args: str) -> Twistd:
    """``twistd *args`` in ``workdir``; the test's cleanup stops it (SIGTERM)."""
    protocol = Twistd()
    process = reactor.spawnProcess(
        protocol, TWISTD, [TWISTD, *args], env=environ(), path=workdir
    )

    def stop() -> Deferred[Any] | None:
        if protocol.ended.called:
            return None
        process.signalProcess("TERM")
        return protocol.ended

    case.addCleanup(stop)
    return protocol


class ConfiguredDaemon(TestCase):
    """For tests of the real ``twistd -n mockai`` on a config they write."""

    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def spawn(self, config: str, *extra: str) -> Twistd:
        path = os.path.join(self.workdir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        argv = ["-n", "--pidfile=", "mockai", f"--config={path}", *extra]
        return spawn_twistd(self, self.workdir, *argv)


class DaemonTests(TestCase):
    def spawn(self, *args: str) -> Twistd:
        return spawn_twistd(self, self.workdir, *args)

    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def write(self, text: str) -> str:
        path = os.path.join(self.workdir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    async def test_help_lists_the_plugin(self) -> None:
        protocol = self.spawn("--help")
        self.assertEqual(await protocol.ended, 0)
        self.assertRegex(
            protocol.out.decode(), r"\n\s+mockai\s+A mock of the OpenAI HTTP API"
        )

    async def test_dockerfile_command_serves(self) -> None:
        path = self.write(SEED_CONFIG)
        protocol = self.spawn("-n", "--pidfile=", "mockai", f"--config={path}")
        port = await protocol.port
        pool = HTTPConnectionPool(reactor, persistent=False)
        health = await treq.get(f"http://127.0.0.1:{port}/health", pool=pool)
        self.assertEqual(health.code, 200)
        self.assertEqual(json.loads(await treq.content(health))["status"], "ok")
        response = await treq.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers=AUTH,
            pool=pool,
        )
        self.assertEqual(response.code, 200)
        validate(
            json.loads(await treq.content(response)), "CreateChatCompletionResponse"
        )
        await pool.closeCachedConnections()
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_bad_config_stops_with_one_line(self) -> None:
        path = self.write(SEED_CONFIG + "stream:\n  interval_ms: -1\n")
        protocol = self.spawn("-n", "--pidfile=", "mockai", f"--config={path}")
        code = await protocol.ended
        self.assertNotEqual(code, 0)
        self.assertEqual(
            protocol.err.decode().strip(), "mockai: stream.interval_ms: must be >= 0"
        )
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_unloadable_configs_stop_with_one_line(self) -> None:
        deep = SEED_CONFIG + "rules: " + "[" * 5000 + "]" * 5000 + "\n"
        cases: list[tuple[str | bytes, str]] = [
            (deep, "nested deeper than 64 levels (line 6, column 71)"),
            ("- access_token: sk-seed-token\n", "the top level must be a mapping"),
            (SEED_CONFIG.encode() + b"replies: [caf\xe9]\n", "is not UTF-8 text"),
            (
                SEED_CONFIG + "admin_token: 98765432109876543210\n",
                "admin_token: must be a string, got a number",
            ),
        ]
        for text, expected in cases:
            path = os.path.join(self.workdir, "config.yaml")
            with open(path, "wb") as f:
                f.write(text.encode() if isinstance(text, str) else text)
            protocol = self.spawn("-n", "--pidfile=", "mockai", f"--config={path}")
            self.assertEqual(await protocol.ended, 1, expected)
            err = protocol.err.decode().strip()
            self.assertEqual(len(err.splitlines()), 1, err[:300])
            self.assertTrue(err.startswith("mockai: "), err[:300])
            self.assertIn(expected, err)
            self.assertNotIn("98765432", err)
            self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_a_taken_port_stops_the_daemon(self) -> None:
        # Seen: the listen failed before the reactor ran, and the daemon sat
        # there serving nothing instead of exiting.
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = self.write(SEED_CONFIG.replace("port: 0", f"port: {port}"))
        protocol = self.spawn("-n", "--pidfile=", "mockai", f"--config={path}")
        # A failure a supervisor restarting on failure sees.
        self.assertEqual(await protocol.ended, 1)
        self.assertIn(b"mockai cannot listen on", protocol.out)
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_missing_config_names_the_file(self) -> None:
        protocol = self.spawn(
            "-n", "--pidfile=", "mockai", "--config=/nonexistent.yaml"
        )
        self.assertNotEqual(await protocol.ended, 0)
        self.assertIn("/nonexistent.yaml: cannot read", protocol.err.decode())

    async def test_real_daemon_with_pidfile_and_logfile(self) -> None:
        path = self.write(SEED_CONFIG)
        pidfile = os.path.join(self.workdir, "mockai.pid")
        logfile = os.path.join(self.workdir, "mockai.log")
        protocol = self.spawn(
            f"--pidfile={pidfile}", f"--logfile={logfile}", "mockai", f"--config={path}"
        )
        # The parent returns once the daemon has started its services.
        self.assertEqual(await protocol.ended, 0)
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(self.reap, pid)
        with open(logfile, "rb") as f:
            match = LISTENING.search(f.read())
        assert match is not None
        pool = HTTPConnectionPool(reactor, persistent=False)
        health = await treq.get(
            f"http://127.0.0.1:{int(match.group(1))}/health", pool=pool
        )
        self.assertEqual(health.code, 200)
        await treq.content(health)
        await pool.closeCachedConnections()

    async def reap(self, pid: int) -> None:
        """Stop a daemon we did not spawn directly; no exit event reaches us."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(500):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await deferLater(reactor, 0.02)
        os.kill(pid, signal.SIGKILL)


class CollectorTests(TestCase):
    """The daemon's garbage collector (collector.py), tuned while it runs."""

    def test_tuned_while_running_and_put_back(self) -> None:
        import gc

        from mockai_tw.collector import THRESHOLDS, TunedCollector

        before = gc.get_threshold()
        tuned = TunedCollector()
        tuned.startService()
        try:
            self.assertEqual(gc.get_threshold(), THRESHOLDS)
            self.assertGreater(gc.get_freeze_count(), 0)
        finally:
            tuned.stopService()
        self.assertEqual(gc.get_threshold(), before)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_the_daemon_has_it_and_tests_do_not(self) -> None:
        from mockai_tw.tap import makeService

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("access_token: k\n")
        options = {"config": path, "listen": "tcp:0:interface=127.0.0.1"}
        untuned: Any = makeService(options, reactor, {})
        tuned: Any = makeService({**options, "tune_gc": True}, reactor, {})
        self.assertNotIn("collector", [s.name for s in untuned])
        self.assertIn("collector", [s.name for s in tuned])
