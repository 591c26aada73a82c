"""Log output: JSON lines for container pipelines, and the access log.

``json_observer`` renders every ``twisted.logger`` event as one flat JSON
object per line; twistd takes it as ``--logger=mockai_tw.logs.json_observer``,
and ``log.format: json`` installs it when the plugin starts (``RootService``).
``AccessLog`` turns the pipeline's ``last_byte`` and ``disconnected`` events
into access-log events; it subscribes only while the access log is on.
Nothing here knows the engine or the wire format.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from twisted.application.service import MultiService
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    formatEvent,
)
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.web.http import combinedLogFormatter, datetimeToLogString

from mockai_tw.hooks import Hooks

access = Logger(namespace="mockai_tw.access")

REDACTED = "[redacted]"
# Keys an old-style (twisted.python.log) event carries for its own bookkeeping;
# what they say is in the message, the level and the traceback already.
LEGACY_KEYS = frozenset(
    {"message", "time", "isError", "printed", "failure", "why", "format", "logLevel"}
)
# Event fields and query parameters whose values are never written.
SECRET_NAMES = frozenset(
    {
        "authorization",
        "api-key",
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "admin_token",
        "password",
        "secret",
    }
)
SECRET_SUFFIXES = ("_token", "_tokens", "_key", "_password", "_secret")


def is_secret(name: str) -> bool:
    """Whether a field or parameter of this name holds a secret."""
    lowered = name.lower()
    return lowered in SECRET_NAMES or lowered.endswith(SECRET_SUFFIXES)


def _time(when: Any) -> str | None:
    if not isinstance(when, (int, float)):
        return None
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A value orjson cannot write, as text (a dataclass by its type only:
    its fields may hold a config's secrets)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "__dataclass_fields__"):
        return f"<{type(value).__name__}>"
    return str(value)


def event_as_json(event: LogEvent) -> str:
    """One event as one line: time, level, namespace, message, then its fields.

    The message is the event's text as the text log shows it; a failure adds
    ``error`` (its type and message) and ``traceback``.  The event's own fields
    follow, except the logger's (``log_*``) and an old-style event's
    bookkeeping; a field named like a secret is written as ``[redacted]``.
    """
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": _time(event.get("log_time")),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        kind = failure.type.__name__ if failure.type is not None else "Error"
        out["error"] = f"{kind}: {failure.getErrorMessage()}"
        out["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in out or key in LEGACY_KEYS:
            continue
        if key == "system" and value == "-":
            continue
        out[key] = REDACTED if is_secret(key) else value
    data = orjson.dumps(
        out,
        default=_plain,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS,
    )
    return data.decode() + "\n"


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """An observer writing one JSON object per line to ``out`` (stdout).

    Also twistd's log observer factory: ``--logger=mockai_tw.logs.json_observer``.
    stdout is taken when this is called, before twistd redirects ``sys.stdout``
    into the log.
    """
    return FileLogObserver(sys.stdout if out is None else out, event_as_json)


def twistd_observer(config: Any, options: Any) -> ILogObserver | None:
    """The observer ``log.format`` asks twistd to use, or None for twistd's own.

    ``options`` are the plugin's; under twistd their ``parent`` holds twistd's
    (``--logfile``, ``--nodaemon``, ``--syslog``, ``--logger``).  JSON goes where
    twistd would have written text: stdout in the foreground without
    ``--logfile`` (or with ``--logfile=-``), else the log file (``twistd.log``
    by default for a daemon), rotated like twistd's.  ``--logger`` and
    ``--syslog`` win over the config; outside twistd (tests, the helper)
    nothing changes.
    """
    if config.log.format != "json":
        return None
    twistd = getattr(options, "parent", None)
    if not isinstance(twistd, Mapping):
        return None
    if twistd.get("logger") or twistd.get("syslog"):
        return None
    name = twistd.get("logfile") or ""
    foreground = bool(twistd.get("nodaemon")) or "nodaemon" not in twistd
    if name == "-" and not foreground:
        return None  # twistd refuses it with its own message
    if name == "-" or (not name and foreground):
        return json_observer()
    logfile = LogFile.fromFullPath(name or "twistd.log")
    _rotate_on_usr1(logfile)
    return json_observer(logfile)


def _rotate_on_usr1(logfile: LogFile) -> None:
    """``SIGUSR1`` rotates the log file, as twistd does for its own."""
    usr1 = getattr(signal, "SIGUSR1", None)
    if usr1 is None or signal.getsignal(usr1):
        return

    def rotate(signum: int, frame: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(logfile.rotate)  # type: ignore[attr-defined]

    signal.signal(usr1, rotate)


class RootService(MultiService):
    """The plugin's top service; made a twistd Application's child, it hands
    the Application ``observer`` as its ``ILogObserver`` (which twistd uses
    unless ``--logger`` names another).  ``None``: twistd's own choice."""

    def __init__(self, observer: ILogObserver | None = None) -> None:
        super().__init__()
        self.observer = observer

    def setServiceParent(self, parent: Any) -> None:
        if self.observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)


def redacted_uri(uri: bytes) -> bytes:
    """``uri`` with the values of secret query parameters replaced."""
    path, mark, query = uri.partition(b"?")
    if not mark:
        return uri
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not any(is_secret(name) for name, _ in pairs):
        return uri
    kept = [(n, REDACTED if is_secret(n) else v) for n, v in pairs]
    return path + b"?" + urlencode(kept, safe="[]").encode("latin-1")


class _AsLogged:
    """A request as the access log shows it: the same, with a redacted URI."""

    def __init__(self, request: Any, uri: bytes) -> None:
        self._request = request
        self.uri = uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def _rule(request: Any) -> str | None:
    scripted = getattr(request.error, "rule", None)
    if scripted:
        return str(scripted)
    reply = request.reply
    if reply is not None and hasattr(reply, "rule"):
        return reply.rule or "default"
    return None


def _model(request: Any) -> str | None:
    """The reply's model, else the one the parsed request asked for."""
    model = getattr(request.reply, "model", None)
    if isinstance(model, str):
        return model
    asked = getattr(request, "model", None)
    return asked if isinstance(asked, str) else None


class AccessLog:
    """One ``mockai_tw.access`` event per request, finished or abandoned.

    Its text is the Combined Log Format line (what the text log shows); its
    fields are the JSON form.  It listens to the pipeline's hooks only while
    ``follow(True)``: an access log that is off costs nothing per request.
    Authorization and api-key headers are never read; a secret query
    parameter's value is redacted.
    """

    def __init__(self, hooks: Hooks, clock: Any) -> None:
        self.hooks = hooks
        self.clock = clock
        self.on = False
        self._stamp: tuple[int, str] = (-1, "")

    def follow(self, on: bool) -> None:
        """Turn the access log on or off (at start and at each reload)."""
        if on == self.on:
            return
        self.on = on
        change = self.hooks.on if on else self.hooks.off
        change("last_byte", self.finished)
        change("disconnected", self.disconnected)

    def finished(self, request: Any) -> None:
        self.emit(request, disconnected=False)

    def disconnected(self, request: Any) -> None:
        self.emit(request, disconnected=True)

    def timestamp(self, now: float) -> str:
        second = int(now)
        if self._stamp[0] != second:
            self._stamp = (second, datetimeToLogString(now))
        return self._stamp[1]

    def emit(self, request: Any, disconnected: bool) -> None:
        now = self.clock.seconds()
        uri = request.uri
        logged = request
        if b"?" in uri:
            safe = redacted_uri(uri)
            if safe != uri:
                logged = _AsLogged(request, safe)
        address = request.getClientAddress()
        content_type = request.responseHeaders.getRawHeaders(b"content-type") or [b""]
        fields: dict[str, Any] = {
            "method": request.method.decode("latin-1"),
            "path": request.path.decode("latin-1"),
            "status": request.code,
            "model": _model(request),
            "duration_ms": round(max(0.0, now - request.started) * 1000, 1),
            "bytes": request.sentLength,
            "stream": content_type[0].startswith(b"text/event-stream"),
            "rule": _rule(request),
            "fault": request.fault,
            "disconnected": disconnected,
            "client": getattr(address, "host", None),
            "request_id": request.request_id,
        }
        # The worker that answered, as its response said (several workers only).
        worker = request.responseHeaders.getRawHeaders(b"x-mockai-worker")
        if worker:
            value = worker[0].decode("latin-1")
            fields["worker"] = int(value) if value.isdigit() else value
        line = combinedLogFormatter(self.timestamp(now), logged)
        access.info("{log_text}", log_text=line, **fields)
