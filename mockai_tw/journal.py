"""The request journal: what clients sent and what they got, in a bounded ring.

Recording sits on the hot path of every ``/v1`` request, so a record only
keeps references (the header store, the body bytes, the reply plan or error)
and everything readable -- lower-cased headers with secrets redacted, the
parsed body, the reply summary -- is built when someone reads the journal.
Pure: no Twisted (header stores are duck-typed), no clock of its own.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(slots=True)
class Record:
    """One request as recorded: references only, summarised on read."""

    id: int
    time: float
    method: bytes
    uri: bytes
    headers: Any
    body: bytes | None
    status: int
    reply: Any = None
    error: Any = None
    fault: str | None = None

    @property
    def path(self) -> str:
        return _text(self.uri.split(b"?", 1)[0])

    def parsed_body(self) -> Any:
        if self.body is None:
            return None
        if len(self.body) > MAX_BODY_BYTES:
            return {"truncated": True, "bytes": len(self.body)}
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return _text(self.body)

    def rule(self) -> str | None:
        """The rule that answered: its id, ``default``, or None (no answer)."""
        for source in (self.error, self.reply):
            if source is None:
                continue
            if hasattr(source, "rule"):
                return getattr(source, "rule", None) or (
                    "default" if source is self.reply else None
                )
        return None

    def model(self, body: Any) -> str | None:
        model = getattr(self.reply, "model", None)
        if isinstance(model, str):
            return model
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return str(body["model"])
        return None

    def view(self) -> dict[str, Any]:
        body = self.parsed_body()
        _, _, query = self.uri.partition(b"?")
        return {
            "id": self.id,
            "time": self.time,
            "method": _text(self.method),
            "path": self.path,
            "query": _text(query) or None,
            "headers": redacted(HeaderMap(self.headers)),
            "body": body,
            "status": self.status,
            "model": self.model(body),
            "rule": self.rule(),
            "stream": isinstance(body, dict) and body.get("stream") is True,
            "reply": reply_summary(self.reply, self.fault),
            "error": error_summary(self.error),
        }


def _calls(choice: Any) -> list[dict[str, str]]:
    calls = list(getattr(choice, "tool_calls", ()) or ())
    single = getattr(choice, "function_call", None)
    if single is not None:
        calls.append(single)
    return [{"name": c.name, "arguments": c.arguments} for c in calls]


def _choice(choice: Any) -> dict[str, Any]:
    text = getattr(choice, "content", getattr(choice, "text", None))
    return {
        "index": getattr(choice, "index", 0),
        "text": text,
        "tool_calls": _calls(choice),
        "finish_reason": getattr(choice, "finish_reason", None),
    }


def _output(item: Any) -> dict[str, Any]:
    """A Responses API output item: a message or a function call."""
    call = getattr(item, "call", None)
    if call is not None:
        return {"text": None, "tool_calls": [_call(call)], "finish_reason": None}
    return {"text": getattr(item, "text", None), "tool_calls": []}


def _call(call: Any) -> dict[str, str]:
    return {"name": call.name, "arguments": call.arguments}


def _usage(reply: Any) -> dict[str, int] | None:
    usage = getattr(reply, "usage", None)
    if usage is not None:
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    prompt = getattr(reply, "prompt_tokens", None)
    if isinstance(prompt, int):
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    return None


def reply_summary(reply: Any, fault: str | None = None) -> dict[str, Any] | None:
    """Text, tool calls, usage and fault of a reply plan (any endpoint's)."""
    if reply is None:
        return None if fault is None else {"fault": fault}
    choices: list[dict[str, Any]] = []
    if getattr(reply, "choices", None) is not None:
        choices = [_choice(c) for c in reply.choices]
    elif getattr(reply, "output", None) is not None:
        choices = [_output(item) for item in reply.output]
    first = choices[0] if choices else {}
    calls = [c for choice in choices for c in choice["tool_calls"]]
    return {
        "text": first.get("text"),
        "tool_calls": calls if len(choices) != 1 else first["tool_calls"],
        "choices": choices,
        "usage": _usage(reply),
        "fault": fault,
    }


def error_summary(error: Any) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "status": getattr(error, "status", None),
        "type": getattr(error, "type", None),
        "code": getattr(error, "code", None),
        "param": getattr(error, "param", None),
        "message": getattr(error, "message", str(error)),
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
        self.ring: deque[Record] = deque(maxlen=size)
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
        self.ring.append(
            Record(
                next(self._ids),
                time,
                method,
                uri,
                headers,
                body,
                status,
                reply,
                error,
                fault,
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
            if since is not None and record.time < since:
                continue
            if path is not None and not _like(record.path, path):
                continue
            view = record.view()
            if model is not None and not _like(view["model"], model):
                continue
            if rule is not None and view["rule"] != rule:
                continue
            out.append(view)
            if limit is not None and len(out) >= limit:
                break
        out.reverse()
        return out
