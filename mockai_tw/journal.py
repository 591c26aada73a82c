"""The request journal: what clients sent and what they got, in a bounded ring.

Recording sits on the hot path of every ``/v1`` request, so a record is a
compact tuple (raw headers, the body bytes, the reply's text, calls and
usage) and everything readable -- lower-cased headers with secrets
redacted, the parsed body, the JSON summary -- is built when someone reads
the journal.
Pure: no Twisted (header stores are duck-typed), no clock of its own.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

REDACTED = "[redacted]"
#: Header names whose values never leave the journal.
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "proxy-authorization", "x-api-key", "cookie"}
)
# Bodies larger than this are kept as their size only (the ring holds
# ``size`` of them, and a load test may send megabytes each).
MAX_BODY_BYTES = 1024 * 1024


class HeaderMap(Mapping[str, str]):
    """A read-only view of an HTTP header store with lower-cased names.

    ``raw`` is anything with Twisted's ``getRawHeaders(bytes)`` and
    ``getAllRawHeaders()``; nothing is copied until a header is read.
    Repeated headers read as one value joined with ", ".
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        values = self._raw.getRawHeaders(name.encode("latin-1"))
        if not values:
            raise KeyError(name)
        return ", ".join(_text(v) for v in values)

    def __iter__(self) -> Iterator[str]:
        for name, _values in self._raw.getAllRawHeaders():
            yield _text(name).lower()

    def __len__(self) -> int:
        return sum(1 for _ in self._raw.getAllRawHeaders())


def _text(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


def redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers as a dict, secrets replaced by ``[redacted]``."""
    return {
        name: REDACTED if name in SECRET_HEADERS else value
        for name, value in headers.items()
    }


# A record is a flat tuple of bytes, strings and numbers, built with as
# little work as possible (about 2 us): the request's own objects (header
# store, reply plan) are not kept, so the ring pins no object graph.
# Secrets are redacted when a record is read.
_ID, _TIME, _METHOD, _URI, _HEADERS, _BODY, _STATUS = range(7)
_RULE, _MODEL, _REPLY, _ERROR, _FAULT, _BODY_SIZE = range(7, 13)


def compact_headers(raw: Any) -> bytes:
    """A header store as ``name: value`` lines."""
    return b"\n".join(
        [
            name + b": " + value
            for name, values in raw.getAllRawHeaders()
            for value in values
        ]
    )


def _call(call: Any) -> list[str]:
    return [call.name, call.arguments]


def _choice(choice: Any) -> list[Any]:
    calls = [_call(c) for c in getattr(choice, "tool_calls", ()) or ()]
    single = getattr(choice, "function_call", None)
    if single is not None:
        calls.append(_call(single))
    text = getattr(choice, "content", None) if calls else getattr(choice, "text", None)
    return [text, calls, getattr(choice, "finish_reason", None)]


def _output(item: Any) -> list[Any]:
    """A Responses API output item: a message or a function call."""
    call = getattr(item, "call", None)
    if call is not None:
        return [None, [_call(call)], None]
    return [getattr(item, "text", None), [], None]


def compact_reply(reply: Any) -> bytes | None:
    """Choices (text, calls, finish) and usage of any endpoint's reply plan."""
    if reply is None:
        return None
    choices: list[Any] = []
    if getattr(reply, "choices", None) is not None:
        choices = [_choice(c) for c in reply.choices]
    elif getattr(reply, "output", None) is not None:
        choices = [_output(item) for item in reply.output]
    usage = getattr(reply, "usage", None)
    counts: list[int] | None = None
    if usage is not None:
        counts = [usage.prompt_tokens, usage.completion_tokens]
    elif isinstance(getattr(reply, "prompt_tokens", None), int):
        counts = [reply.prompt_tokens, 0]
    return orjson.dumps([choices, counts])


def compact_error(error: Any) -> bytes | None:
    if error is None:
        return None
    return orjson.dumps(
        [
            getattr(error, "status", None),
            getattr(error, "type", None),
            getattr(error, "code", None),
            getattr(error, "param", None),
            getattr(error, "message", str(error)),
        ]
    )


def _rule(reply: Any, error: Any) -> str | None:
    """The rule that answered: its id, ``default``, or None (no answer)."""
    scripted = getattr(error, "rule", None)
    if scripted:
        return str(scripted)
    if reply is not None and hasattr(reply, "rule"):
        return reply.rule or "default"
    return None


def _headers(record: tuple[Any, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in record[_HEADERS].split(b"\n") if record[_HEADERS] else ():
        name, _, value = line.partition(b": ")
        key = _text(name).lower()
        out[key] = f"{out[key]}, {_text(value)}" if key in out else _text(value)
    return redacted(out)


def _body(record: tuple[Any, ...]) -> Any:
    body = record[_BODY]
    if body is None:
        if record[_BODY_SIZE]:
            return {"truncated": True, "bytes": record[_BODY_SIZE]}
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _text(body)


def _path(record: tuple[Any, ...]) -> str:
    return _text(record[_URI].split(b"?", 1)[0])


def _model(record: tuple[Any, ...], body: Any) -> str | None:
    model = record[_MODEL]
    if isinstance(model, str):
        return model
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    return None


def reply_summary(
    reply: bytes | None, fault: str | None = None
) -> dict[str, Any] | None:
    """Text, tool calls, usage and fault of a compacted reply."""
    if reply is None:
        return None if fault is None else {"fault": fault}
    compact_choices, counts = orjson.loads(reply)
    choices = [
        {
            "index": i,
            "text": text,
            "tool_calls": [{"name": n, "arguments": a} for n, a in calls],
            "finish_reason": finish,
        }
        for i, (text, calls, finish) in enumerate(compact_choices)
    ]
    usage = None
    if counts is not None:
        usage = {
            "prompt_tokens": counts[0],
            "completion_tokens": counts[1],
            "total_tokens": counts[0] + counts[1],
        }
    return {
        "text": choices[0]["text"] if choices else None,
        "tool_calls": [c for choice in choices for c in choice["tool_calls"]],
        "choices": choices,
        "usage": usage,
        "fault": fault,
    }


def error_summary(error: bytes | None) -> dict[str, Any] | None:
    if error is None:
        return None
    status, kind, code, param, message = orjson.loads(error)
    return {
        "status": status,
        "type": kind,
        "code": code,
        "param": param,
        "message": message,
    }


def view(record: tuple[Any, ...]) -> dict[str, Any]:
    """A record as ``GET /_mock/requests`` shows it."""
    body = _body(record)
    _, _, query = record[_URI].partition(b"?")
    return {
        "id": record[_ID],
        "time": record[_TIME],
        "method": _text(record[_METHOD]),
        "path": _path(record),
        "query": _text(query) or None,
        "headers": _headers(record),
        "body": body,
        "status": record[_STATUS],
        "model": _model(record, body),
        "rule": record[_RULE],
        "stream": isinstance(body, dict) and body.get("stream") is True,
        "reply": reply_summary(record[_REPLY], record[_FAULT]),
        "error": error_summary(record[_ERROR]),
    }


def _like(value: str | None, pattern: str) -> bool:
    if value is None:
        return False
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(value, pattern)
    return value == pattern


class Journal:
    """The newest ``size`` requests; ``record`` is O(1) and allocation-light."""

    def __init__(self, size: int = 1000, enabled: bool = True) -> None:
        self.enabled = enabled
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=size)
        self._ids = itertools.count(1)

    @property
    def size(self) -> int:
        return self.ring.maxlen or 0

    def configure(self, size: int, enabled: bool) -> None:
        """Resize (keeping the newest) and switch on or off, as a reload asks."""
        self.enabled = enabled
        if size != self.size:
            self.ring = deque(self.ring, maxlen=size)

    def __len__(self) -> int:
        return len(self.ring)

    def record(
        self,
        time: float,
        method: bytes,
        uri: bytes,
        headers: Any,
        body: bytes | None,
        status: int,
        reply: Any = None,
        error: Any = None,
        fault: str | None = None,
    ) -> None:
        """Keep a compact copy (see above); the reply plan itself is dropped."""
        body_size = 0
        if body is not None and len(body) > MAX_BODY_BYTES:
            body_size, body = len(body), None
        model = getattr(reply, "model", None)
        self.ring.append(
            (
                next(self._ids),
                time,
                method,
                uri,
                compact_headers(headers),
                body,
                status,
                _rule(reply, error),
                model if isinstance(model, str) else None,
                compact_reply(reply),
                None if error is None else compact_error(error),
                fault,
                body_size,
            )
        )

    def clear(self) -> int:
        """Forget everything; returns how many records there were."""
        count = len(self.ring)
        self.ring.clear()
        return count

    def query(
        self,
        path: str | None = None,
        model: str | None = None,
        rule: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching records, newest last; ``limit`` keeps the newest N.

        ``path`` and ``model`` are exact, or globs (``/v1/chat/*``); ``since``
        is a Unix time (records at or after it).
        """
        out: list[dict[str, Any]] = []
        for record in reversed(self.ring):
            if since is not None and record[_TIME] < since:
                continue
            if path is not None and not _like(_path(record), path):
                continue
            if rule is not None and record[_RULE] != rule:
                continue
            shown = view(record)
            if model is not None and not _like(shown["model"], model):
                continue
            out.append(shown)
            if limit is not None and len(out) >= limit:
                break
        out.reverse()
        return out
