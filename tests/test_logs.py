"""Logs: JSON lines, the access log, request ids on every line, no secrets.

The JSON observer is tested on its own; the access log and the failure logs
against a live listener; ``log.format: json`` and ``--logger`` against the real
``twistd``, whose stdout is read line by line.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

import yaml

import treq
from twisted.application.service import Application, IServiceCollection
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    eventAsText,
    globalLogPublisher,
)
from twisted.python import log as legacy
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from zope.interface import provider

from mockai_tw.config import Config, LogConfig
from mockai_tw.logs import (
    RootService,
    event_as_json,
    json_observer,
    redacted_uri,
    twistd_observer,
)
from tests.support import TOKEN, start

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
ADMIN = "adm-logs-5f4e3d2c1b"
CLIENT_KEY = "sk-client-wrong-7a6b5c"
BASIC_PASSWORD = "pw-basic-9d8c7b"
NUMBER_SECRET = "98765432109876543210"
UPSTREAM = "sk-upstream-3e2d1c"
SECRETS = (TOKEN, ADMIN, CLIENT_KEY, BASIC_PASSWORD, NUMBER_SECRET, UPSTREAM)
CHAT = "/v1/chat/completions"
AUTH: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {TOKEN}"}
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
COMBINED = re.compile(
    r'^"[\d.]+" - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
    r'"(GET|POST) \S+ HTTP/1\.1" \d{3} (\d+|-) "[^"]*" "[^"]*"$'
)


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def one_line(out: io.StringIO) -> dict[str, Any]:
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


class Captured:
    """Every log event while a test runs, rendered as both logs would show it."""

    def __init__(self, case: TestCase) -> None:
        self.events: list[LogEvent] = []
        self.waiting: list[tuple[Callable[[LogEvent], bool], Deferred[LogEvent]]] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.events.append(event)
            for entry in list(self.waiting):
                if entry[0](event):
                    self.waiting.remove(entry)
                    entry[1].callback(event)

        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)

    def access(self) -> list[LogEvent]:
        return [e for e in self.events if e.get("log_namespace") == "mockai_tw.access"]

    def first(self, predicate: Callable[[LogEvent], bool]) -> Deferred[LogEvent]:
        """Fires with the first event (logged already, or to come) that matches."""
        for event in self.events:
            if predicate(event):
                return Deferred.fromCoroutine(_now(event))
        d: Deferred[LogEvent] = Deferred()
        self.waiting.append((predicate, d))
        return d

    def rendered(self) -> list[str]:
        """Each event as the text log writes it (traceback included) and as JSON."""
        lines = []
        for event in self.events:
            lines.append(eventAsText(event, includeTraceback=True))
            lines.append(event_as_json(event))
        return lines


async def _now(event: LogEvent) -> LogEvent:
    return event


def request_id(response: Any) -> str:
    values = response.headers.getRawHeaders(b"x-request-id")
    assert values, "no x-request-id"
    return str(values[0].decode())


@dataclasses.dataclass(frozen=True)
class Settings:
    admin_token: str = "a secret in a dataclass"


class JsonObserverTests(TestCase):
    def test_lines_parse_and_carry_the_fields(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="mockai.test", observer=json_observer(out))
        log.info("hello {who}", who="world", request_id="req_1", count=3)
        line = one_line(out)
        self.assertRegex(line["time"], ISO_TIME)
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["namespace"], "mockai.test")
        self.assertEqual(line["message"], "hello world")
        self.assertEqual(
            {k: line[k] for k in ("who", "request_id", "count")},
            {"who": "world", "request_id": "req_1", "count": 3},
        )
        self.assertFalse([k for k in line if k.startswith("log_")])

    def test_a_failure_carries_its_error_and_traceback(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="mockai.test", observer=json_observer(out))
        try:
            raise ValueError("boom")
        except ValueError:
            log.failure("answering failed (request {request_id})", request_id="req_2")
        line = one_line(out)
        self.assertEqual(line["level"], "critical")
        self.assertEqual(line["message"], "answering failed (request req_2)")
        self.assertEqual(line["request_id"], "req_2")
        self.assertEqual(line["error"], "ValueError: boom")
        self.assertIn("ValueError: boom", line["traceback"])

    def test_any_value_is_written_and_secret_fields_are_not(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="mockai.test", observer=json_observer(out))
        log.warn(
            "odd values",
            raw=b"bytes\xff",
            thing=Failure,
            settings=Settings(),
            api_key="sk-field",
            admin_token="adm-field",
            numbers={1: "one"},
        )
        text = out.getvalue()
        self.assertNotIn("sk-field", text)
        self.assertNotIn("adm-field", text)
        self.assertNotIn("a secret in a dataclass", text)
        line = one_line(out)
        self.assertEqual(line["level"], "warn")
        self.assertEqual(line["raw"], "bytes\ufffd")
        self.assertIn("Failure", line["thing"])
        self.assertEqual(line["settings"], "<Settings>")
        self.assertEqual(line["api_key"], "[redacted]")
        self.assertEqual(line["numbers"], {"1": "one"})

    def test_old_style_events_are_flat_too(self) -> None:
        out = io.StringIO()
        observer = json_observer(out)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        legacy.msg("an old-style line", extra="kept")
        line = one_line(out)
        self.assertEqual(line["message"], "an old-style line")
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["extra"], "kept")
        self.assertRegex(line["time"], ISO_TIME)
        self.assertFalse({"isError", "printed", "format", "system"} & set(line))


class RedactionTests(TestCase):
    def test_secret_query_parameters_are_redacted(self) -> None:
        self.assertEqual(
            redacted_uri(b"/v1/models?api-key=sk-1&limit=2&admin_token=adm"),
            b"/v1/models?api-key=[redacted]&limit=2&admin_token=[redacted]",
        )
        for uri in (b"/v1/models", b"/v1/models?limit=2&after=x%20y", b"/x?"):
            self.assertIs(redacted_uri(uri), uri)


class Twistd(dict[str, Any]):
    """The plugin's options as twistd hands them over: ``parent`` is twistd's."""

    def __init__(self, **twistd: Any) -> None:
        super().__init__()
        self.parent = {
            "logfile": None,
            "logger": None,
            "syslog": False,
            "nodaemon": True,
            **twistd,
        }


JSON = Config(log=LogConfig(format="json"))


class ObserverChoiceTests(TestCase):
    def test_text_or_no_twistd_changes_nothing(self) -> None:
        self.assertIsNone(twistd_observer(Config(), Twistd()))
        self.assertIsNone(twistd_observer(JSON, {"config": "x.yaml"}))

    def test_twistd_options_win(self) -> None:
        self.assertIsNone(twistd_observer(JSON, Twistd(logger=FileLogObserver)))
        self.assertIsNone(twistd_observer(JSON, Twistd(syslog=True)))
        # twistd refuses a daemon logging to stdout itself, in its words.
        self.assertIsNone(twistd_observer(JSON, Twistd(logfile="-", nodaemon=False)))

    def test_foreground_is_stdout(self) -> None:
        for options in (Twistd(), Twistd(logfile="-")):
            out = io.StringIO()
            self.patch(sys, "stdout", out)
            observer = twistd_observer(JSON, options)
            assert observer is not None
            Logger(namespace="t", observer=observer).info("to stdout")
            self.assertEqual(one_line(out)["message"], "to stdout")

    def test_a_logfile_gets_the_json(self) -> None:
        if hasattr(signal, "SIGUSR1"):
            self.addCleanup(
                signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1)
            )
        path = os.path.abspath(self.mktemp())
        observer = twistd_observer(JSON, Twistd(logfile=path, nodaemon=False))
        assert observer is not None
        Logger(namespace="t", observer=observer).info("to {where}", where="a file")
        with open(path, encoding="utf-8") as f:
            line = json.loads(f.read())
        self.assertEqual(line["message"], "to a file")
        if hasattr(signal, "SIGUSR1"):
            self.assertTrue(callable(signal.getsignal(signal.SIGUSR1)))

    def test_the_root_service_hands_twistd_the_observer(self) -> None:
        observer = json_observer(io.StringIO())
        application = Application("mockai")
        root = RootService(observer)
        root.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)
        self.assertIn(root, list(IServiceCollection(application)))
        plain = Application("mockai")
        RootService(None).setServiceParent(plain)
        self.assertIsNone(plain.getComponent(ILogObserver, None))


class Dropper(Protocol):
    """Sends one streamed chat request and hangs up at the first byte back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.gone: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        body = json.dumps(chat(stream=True)).encode()
        assert self.transport is not None
        self.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    def dataReceived(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.abortConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gone.callback(None)


class AccessLogTests(TestCase):
    async def test_off_by_default_and_nothing_listens(self) -> None:
        captured = Captured(self)
        # Metrics off too: they listen to the same hooks (test_metrics.py).
        live = await start(self, {"metrics": {"enabled": False}})
        hooks = live.server.hooks
        self.assertEqual(hooks.listeners["last_byte"], [])
        self.assertEqual(hooks.listeners["disconnected"], [])
        response, _ = await live.json("POST", CHAT, chat())
        self.assertEqual(response.code, 200)
        self.assertEqual(captured.access(), [])
        # A reload turns it on and off again.
        config = live.server.config
        on = dataclasses.replace(
            config, http=dataclasses.replace(config.http, access_log=True)
        )
        live.server.apply(on)
        self.assertEqual(len(hooks.listeners["last_byte"]), 1)
        live.server.apply(on)
        self.assertEqual(len(hooks.listeners["last_byte"]), 1)
        live.server.apply(config)
        self.assertEqual(hooks.listeners["last_byte"], [])

    async def test_one_event_per_request_with_its_fields(self) -> None:
        captured = Captured(self)
        live = await start(
            self,
            {
                "http": {"mode": "debug"},
                "strict_models": True,
                "rules": [
                    {"name": "refunds", "match": {"content": "refund"}, "answer": "ok"}
                ],
            },
        )
        plain, _ = await live.json("POST", CHAT, chat("refund please"))
        streamed = await live.request("POST", CHAT, chat(stream=True))
        await treq.content(streamed)
        missing, _ = await live.json("POST", CHAT, {**chat(), "model": "gpt-0"})
        refused, _ = await live.json("GET", "/v1/models", token="sk-nope")
        by_id = {e["request_id"]: e for e in captured.access()}
        self.assertEqual(len(by_id), 4)

        first = by_id[request_id(plain)]
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["path"], CHAT)
        self.assertEqual(first["status"], 200)
        self.assertEqual(first["model"], "gpt-4o")
        self.assertEqual(first["rule"], "refunds")
        self.assertFalse(first["stream"])
        self.assertFalse(first["disconnected"])
        self.assertIsNone(first["fault"])
        self.assertGreater(first["bytes"], 0)
        self.assertGreaterEqual(first["duration_ms"], 0)
        self.assertEqual(first["client"], "127.0.0.1")

        second = by_id[request_id(streamed)]
        self.assertTrue(second["stream"])
        self.assertEqual(second["rule"], "default")
        self.assertEqual(by_id[request_id(missing)]["status"], 404)
        self.assertEqual(by_id[request_id(missing)]["model"], "gpt-0")
        self.assertEqual(by_id[request_id(refused)]["status"], 401)

        # The text log shows the Combined Log Format line; JSON shows the fields.
        for event in by_id.values():
            text = eventAsText(event, includeTimestamp=False, includeSystem=False)
            self.assertRegex(text, COMBINED)
            line = json.loads(event_as_json(event))
            self.assertEqual(line["message"], text)
            self.assertEqual(line["request_id"], event["request_id"])
            self.assertEqual(line["namespace"], "mockai_tw.access")

    async def test_the_worker_is_the_one_the_response_names(self) -> None:
        captured = Captured(self)
        live = await start(self, {"http": {"access_log": True}})
        response, _ = await live.json("POST", CHAT, chat())
        self.assertNotIn("worker", captured.access()[0])
        # What workers.py sends on every response, with several workers.
        live.server.hooks.on(
            "admitted", lambda request: request.setHeader(b"x-mockai-worker", b"3")
        )
        response, _ = await live.json("POST", CHAT, chat())
        self.assertEqual(response.headers.getRawHeaders(b"x-mockai-worker"), [b"3"])
        self.assertEqual(captured.access()[1]["worker"], 3)

    async def test_a_client_that_leaves_is_logged_as_disconnected(self) -> None:
        captured = Captured(self)
        live = await start(
            self, {"http": {"access_log": True}, "stream": {"interval_ms": 50}}
        )
        logged = captured.first(lambda e: bool(e.get("disconnected")))
        dropper = Dropper(live.port)
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", live.port), dropper
        )
        await dropper.gone
        event = await logged
        self.assertTrue(event["stream"])
        self.assertEqual(event["path"], CHAT)
        self.assertTrue(event["request_id"].startswith("req_"))
        self.assertEqual(captured.access(), [event])


class RequestIdTests(TestCase):
    async def test_failure_logs_name_the_request(self) -> None:
        captured = Captured(self)
        live = await start(self)

        def broken(request: Any) -> None:
            raise RuntimeError("listener broke")

        live.server.hooks.on("admitted", broken)
        response, _ = await live.json("POST", CHAT, chat())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        live.server.hooks.off("admitted", broken)
        engine: Any = live.server.engine
        engine.chat = lambda *a, **kw: 1 / 0
        failed, _ = await live.json("POST", CHAT, chat())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(failed.code, 500)
        failures = [e for e in captured.events if "log_failure" in e]
        self.assertEqual(
            [e["request_id"] for e in failures],
            [request_id(response), request_id(failed)],
        )
        for event in failures:
            self.assertIn(event["request_id"], eventAsText(event))
            self.assertEqual(
                json.loads(event_as_json(event))["request_id"], event["request_id"]
            )


class SecretTests(TestCase):
    async def test_tokens_never_reach_a_log_line(self) -> None:
        captured = Captured(self)
        live = await start(
            self,
            {
                "admin_token": ADMIN,
                "http": {"access_log": True},
                "journal": {"enabled": True},
            },
        )
        admin = {"Authorization": f"Bearer {ADMIN}"}
        basic = base64.b64encode(f"someone:{BASIC_PASSWORD}".encode()).decode()
        azure = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
        sent: list[Any] = []
        calls: list[tuple[str, str, Any, dict[str, Any]]] = [
            ("POST", CHAT, chat(), {}),
            ("POST", CHAT, chat(stream=True), {}),
            ("POST", CHAT, chat(), {"token": CLIENT_KEY}),
            ("POST", f"{CHAT}?api-key={TOKEN}&key={CLIENT_KEY}", chat(), {}),
            ("POST", azure, chat(), {"token": None, "headers": {"api-key": TOKEN}}),
            (
                "POST",
                azure,
                chat(),
                {"token": None, "headers": {"api-key": CLIENT_KEY}},
            ),
            (
                "GET",
                "/v1/models",
                None,
                {"token": None, "headers": {"Authorization": f"Basic {basic}"}},
            ),
            ("GET", "/_mock/requests", None, {"token": None, "headers": admin}),
            ("GET", "/_mock/config", None, {"token": None, "headers": admin}),
            ("GET", "/_mock/requests", None, {"token": CLIENT_KEY}),
        ]
        for method, path, body, kw in calls:
            response = await live.request(method, path, body, **kw)
            await treq.content(response)
            sent.append(response)

        # Config errors, at a reload: the values are secrets, the lines name keys.
        assert live.server.config_path is not None
        for bad in (
            {"access_token": TOKEN, "admin_token": int(NUMBER_SECRET)},
            {"access_token": [UPSTREAM]},
            {"access_token": TOKEN, "upstream_key": UPSTREAM},
        ):
            with open(live.server.config_path, "w", encoding="utf-8") as f:
                yaml.safe_dump(bad, f)
            response = await live.request(
                "POST", "/_mock/reload", token=None, headers=admin
            )
            await treq.content(response)
            self.assertEqual(response.code, 400)

        # And a failure logged with a traceback while answering.
        def broken(request: Any) -> None:
            raise RuntimeError(f"listener broke for {request.api_key[:3]}")

        live.server.hooks.on("admitted", broken)
        await treq.content(await live.request("POST", CHAT, chat()))
        self.flushLoggedErrors(RuntimeError)

        lines = captured.rendered()
        for secret in SECRETS:
            leaks = [line for line in lines if secret in line]
            self.assertEqual(leaks, [], secret)
        # Not vacuous: every request, the reload errors and the failure were logged.
        ids = {e["request_id"] for e in captured.access()}
        self.assertTrue({request_id(r) for r in sent} <= ids)
        self.assertIn("api-key=[redacted]", "".join(lines))
        reloads = [line for line in lines if "config not reloaded" in line]
        self.assertEqual(len(reloads), 6)  # three events, each as text and JSON
        self.assertTrue(any("listener failed" in line for line in lines))


class Process(ProcessProtocol):
    """A twistd whose stdout is JSON lines; waits on lines, never on time."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.lines: list[dict[str, Any]] = []
        self.waiting: list[tuple[Callable[[dict[str, Any]], bool], Deferred[Any]]] = []
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        *complete, rest = self.out.split(b"\n")
        self.out = rest
        for raw in complete:
            line = json.loads(raw)  # every line parses, or the test errors here
            self.lines.append(line)
            for entry in list(self.waiting):
                if entry[0](line):
                    self.waiting.remove(entry)
                    entry[1].callback(line)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def line(self, predicate: Callable[[dict[str, Any]], bool]) -> Deferred[Any]:
        for line in self.lines:
            if predicate(line):
                return Deferred.fromCoroutine(_now(line))
        d: Deferred[Any] = Deferred()
        if self.ended.called:
            d.errback(RuntimeError(f"twistd exited: {self.err!r}"))
        else:
            self.waiting.append((predicate, d))
        return d

    def processEnded(self, reason: Failure) -> None:
        waiting, self.waiting = self.waiting, []
        for _, d in waiting:
            d.errback(RuntimeError(f"twistd exited: {self.err!r}"))
        code = (
            reason.value.exitCode
            if isinstance(reason.value, (ProcessDone, ProcessTerminated))
            else None
        )
        self.ended.callback(code)


def listening(line: dict[str, Any]) -> bool:
    return "listening on" in line.get("message", "")


class DaemonLogTests(TestCase):
    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def spawn(self, config: dict[str, Any], *twistd: str) -> tuple[Process, str]:
        path = os.path.join(self.workdir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        protocol = Process()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKAI_")}
        argv = [TWISTD, "-n", "--pidfile=", *twistd, "mockai", f"--config={path}"]
        process = reactor.spawnProcess(
            protocol, TWISTD, argv, env=env, path=self.workdir
        )

        def stop() -> Deferred[int | None] | None:
            if protocol.ended.called:
                return None
            process.signalProcess("TERM")
            return protocol.ended

        self.addCleanup(stop)
        self.process = process
        return protocol, path

    async def test_json_lines_carry_the_request_id(self) -> None:
        config = {
            "http": {"host": "127.0.0.1", "port": 0, "access_log": True},
            "access_token": TOKEN,
            "admin_token": ADMIN,
            "log": {"format": "json"},
        }
        protocol, path = self.spawn(config)
        started = await protocol.line(listening)
        port = int(started["where"].rsplit(":", 1)[1])
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = await treq.post(
            f"http://127.0.0.1:{port}{CHAT}",
            json=chat(),
            headers=AUTH,
            pool=pool,
        )
        await treq.content(response)
        rid = request_id(response)
        access = await protocol.line(lambda line: line.get("request_id") == rid)
        self.assertEqual(access["namespace"], "mockai_tw.access")
        self.assertEqual((access["status"], access["path"]), (200, CHAT))
        self.assertRegex(access["message"], COMBINED)
        # A config error at SIGHUP: one JSON line naming the key, not the value.
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump({**config, "admin_token": int(NUMBER_SECRET)}, f)
        refused = protocol.line(lambda line: "config not reloaded" in line["message"])
        self.process.signalProcess("HUP")
        line = await refused
        self.assertEqual(line["level"], "error")
        self.assertIn("admin_token: must be a string, got a number", line["message"])
        self.process.signalProcess("TERM")
        await protocol.ended  # twistd ends by the signal it was sent
        self.assertEqual(protocol.out, b"")  # no partial line left
        for line in protocol.lines:
            self.assertRegex(line["time"], ISO_TIME)
            self.assertIn(
                line["level"], {level.name for level in LogLevel.iterconstants()}
            )
            self.assertIsInstance(line["namespace"], str)
            self.assertIsInstance(line["message"], str)
        self.assertEqual(protocol.lines[-1]["message"], "Server Shut Down.")
        everything = json.dumps(protocol.lines) + protocol.err.decode()
        for secret in (TOKEN, ADMIN, NUMBER_SECRET):
            self.assertNotIn(secret, everything)
        self.assertNotIn("Traceback", everything)

    async def test_the_logger_option_works_without_the_config(self) -> None:
        protocol, _ = self.spawn(
            {"http": {"host": "127.0.0.1", "port": 0}, "access_token": TOKEN},
            "--logger=mockai_tw.logs.json_observer",
        )
        line = await protocol.line(listening)
        self.assertEqual(line["namespace"], "mockai_tw.server")
        self.assertEqual(line["level"], "info")
