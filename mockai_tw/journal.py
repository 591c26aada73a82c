"""The request journal: what clients sent and what they got, in a bounded ring.

Recording sits on the hot path of every ``/v1`` request.  Each object a
record keeps alive is one more the allocator cannot reuse while it is hot
(keeping the request's own objects, its plan among them, cost 9% of
throughput; see benchmarks/README.md), and each bytecode per request counts.
So a record is one ``bytes`` -- a fixed head, then the raw method, URI,
headers and body, and a tail: compact reply, error and fault -- or, for an
answer alike to others (the same reply, rule, model and counts), a tuple of
what it came with (head and body bytes) and the tail it shares with them,
packed into its ``bytes`` when the journal is read.
Everything readable -- lower-cased headers with secrets redacted, the parsed
body, the JSON summary -- is built when someone reads the journal.
Pure: no Twisted (header stores and the request are duck-typed), no clock of
its own.
"""

from __future__ import annotations

import fnmatch
import itertools
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, cast

import orjson

from mockai_tw.tables import remember

REDACTED = "[redacted]"
#: Header names whose values never leave the journal.
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "proxy-authorization", "x-api-key", "cookie"}
)
# Bodies larger than this (or than a quarter of ``max_bytes``) are kept as
# their size only: one would push out hundreds of ordinary records.
MAX_BODY_BYTES = 1024 * 1024
# Answers ``Journal.keep`` holds before it packs them.
KEEP_BATCH = 64
# ``Journal.record``'s arguments: time, method, uri, headers, body, status,
# reply, error, fault.
Entry = tuple[float, bytes, bytes, Any, "bytes | None", int, Any, Any, "str | None"]
# ``Journal.keep``'s: time, the head as it came, body, status, reply.
Answer = tuple[float, bytes, "bytes | None", int, Any]
# An answer the ring holds as it came, packed only when the journal is read
# (a record is then one ``bytes`` like any other): its size packed, id,
# time, status, head, body, and the tail it shares with answers alike.
Held = tuple[int, int, float, int, bytes, bytes, bytes]


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


# A record: ``_HEAD`` (id, time, status, the sizes of the head lines and the
# body, the size of a body too large to keep, the sizes of the method and the
# URI), those four fields, then ``_TAIL`` (the sizes of the rule, the model,
# the reply, the error and the fault) and those five.  What follows the body
# is the same for requests answered alike (``_TAILS`` keeps it whole); the
# method and the URI are empty when the head lines are the head as it came,
# whose request line holds them.
_HEAD = struct.Struct("<QdHIIQII")
# ``_HEAD``'s first five fields; the last three are then zero (``_NO_SIZES``).
_FIRST = struct.Struct("<QdHII")
_NO_SIZES = bytes(_HEAD.size - _FIRST.size)
_TAIL = struct.Struct("<5I")


class Record(NamedTuple):
    """A record unpacked; text fields are empty when there was nothing."""

    id: int
    time: float
    status: int
    body_size: int
    method: bytes
    uri: bytes
    headers: bytes
    body: bytes
    rule: bytes
    model: bytes
    reply: bytes
    error: bytes
    fault: bytes


def _packed(record: bytes | Held) -> bytes:
    if type(record) is bytes:
        return record
    _, record_id, time, status, head, body, tail = cast(Held, record)
    first = _FIRST.pack(record_id, time, status, len(head), len(body))
    return b"".join((first, _NO_SIZES, head, body, tail))


def unpack(record: bytes) -> Record:
    """A packed record's head and fields."""
    record_id, time, status, lines, size, body_size, method_size, uri_size = (
        _HEAD.unpack_from(record)
    )
    at = _HEAD.size
    fields: list[bytes] = []
    for length in (method_size, uri_size, lines, size):
        fields.append(record[at : at + length])
        at += length
    sizes = _TAIL.unpack_from(record, at)
    at += _TAIL.size
    for length in sizes:
        fields.append(record[at : at + length])
        at += length
    if not method_size and b" " in (line := fields[2].partition(b"\r\n")[0]):
        # The head as it came: its request line (three words, as twisted.web
        # reads it) holds the method and the URI.
        fields[0], fields[1] = line.split()[:2]
    return Record(record_id, time, status, body_size, *fields)


def _flat_headers(raw: Any) -> list[bytes]:
    flat: list[bytes] = []
    add = flat.append
    for name, values in raw.getAllRawHeaders():
        for value in values:
            add(name)
            add(value)
    return flat


def _packed_headers(headers: Any) -> bytes:
    # Inlined for the common case: Twisted's own header store with each
    # header sent once.
    raw = getattr(headers, "_rawHeaders", None)
    if type(raw) is dict:
        flat: list[bytes] = []
        try:
            for name, (value,) in raw.items():
                flat += (name, value)
        except ValueError:  # a header sent more than once
            flat = _flat_headers(headers)
    else:
        flat = _flat_headers(headers)
    return b"\n".join(flat)


def compact_headers(raw: Any) -> bytes:
    """A header store as alternate name and value lines (neither holds a newline)."""
    return b"\n".join(_flat_headers(raw))


def _headers(packed: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in _pairs(packed):
        key, text = _text(name).lower(), _text(value)
        out[key] = f"{out[key]}, {text}" if key in out else text
    return redacted(out)


def _pairs(packed: bytes) -> Iterator[tuple[bytes, bytes]]:
    """A record's headers, as packed: alternate name and value lines, or
    the request's head as it came (a request line, then ``Name: value``
    lines; told apart by the spaces of its first line, which no header name
    holds)."""
    if not packed:
        return
    if b" " in packed.partition(b"\n")[0]:
        for line in packed.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            yield name, value.strip(b" \t")
        return
    lines = packed.split(b"\n")
    yield from zip(lines[::2], lines[1::2], strict=True)


def _call(call: Any) -> tuple[str, str]:
    return (call.name, call.arguments)


def _choice(choice: Any) -> tuple[Any, ...]:
    """(text, calls, finish reason) of any endpoint's choice."""
    finish = getattr(choice, "finish_reason", None)
    calls = getattr(choice, "tool_calls", None)
    single = getattr(choice, "function_call", None)
    if not calls and single is None:
        return (getattr(choice, "text", None), (), finish)
    compact = [_call(c) for c in calls or ()]
    if single is not None:
        compact.append(_call(single))
    return (None, compact, finish)


def _output(item: Any) -> tuple[Any, ...]:
    """A Responses API output item: a message or a function call."""
    call = getattr(item, "call", None)
    if call is not None:
        return (None, (_call(call),), None)
    return (getattr(item, "text", None), (), None)


# Packed choices (``compact_reply``'s first half) by ``id`` of a frozen plan
# part, kept with it so the id cannot be reused: a canned choice, and the
# ``choices`` tuple a plain chat plan shares, are packed once, not per request.
_PACKED: dict[int, tuple[Any, bytes]] = {}
# Entries at most; then it starts again (parts made per request churn it).
MAX_PACKED = 512
# What follows a record's body (``_TAIL`` and its fields) for a reply with
# no error or fault, by (``id`` of its choices, rule, model, prompt and
# completion tokens), with the choices (so the id cannot be reused).
_TAILS: dict[tuple[int, Any, Any, int, int], tuple[Any, bytes]] = {}


def _remember_tail(reply: Any, tail: bytes) -> None:
    """Keep ``tail`` for ``Journal._hold`` when it can find it again: a
    chat plan whose choices are packed once for all (frozen, ``_PACKED``)
    and whose counts are ints (in the key by value)."""
    choices = getattr(reply, "choices", None)
    usage = getattr(reply, "usage", None)
    known = _PACKED.get(id(choices))
    if (
        known is not None
        and known[0] is choices
        and usage is not None
        and type(prompt := usage.prompt_tokens) is int
        and type(completion := usage.completion_tokens) is int
        and type(model := getattr(reply, "model", None)) is str
    ):
        key = (id(choices), reply.rule, model, prompt, completion)
        if key not in _TAILS:
            remember(_TAILS, key, (choices, tail), MAX_PACKED)


# Whether a class is a frozen dataclass (only those parts are kept).
_FROZEN: dict[type, bool] = {}


def _frozen(part: Any) -> bool:
    kind = type(part)
    frozen = _FROZEN.get(kind)
    if frozen is None:
        params = getattr(kind, "__dataclass_params__", None)
        frozen = _FROZEN[kind] = bool(getattr(params, "frozen", False))
    return frozen


def _keep(part: Any, packed: bytes) -> None:
    remember(_PACKED, id(part), (part, packed), MAX_PACKED)


def _packed_item(item: Any, compact: Any) -> bytes:
    known = _PACKED.get(id(item))
    if known is not None and known[0] is item:
        return known[1]
    packed = orjson.dumps(compact(item))
    if _frozen(item):
        _keep(item, packed)
    return packed


def _packed_items(items: Any, compact: Any) -> bytes:
    """``items`` compacted, as a JSON array (what ``orjson`` makes of a list)."""
    known = _PACKED.get(id(items))
    if known is not None and known[0] is items:
        return known[1]
    pieces = [_packed_item(item, compact) for item in items]
    packed = b"[" + b",".join(pieces) + b"]"
    if type(items) is tuple and all(map(_frozen, items)):
        _keep(items, packed)
    return packed


def compact_reply(reply: Any) -> bytes:
    """Choices (text, calls, finish) and usage of any endpoint's reply plan."""
    if reply is None:
        return b""
    choices: Any = getattr(reply, "choices", None)
    if choices is not None:
        packed = _packed_items(choices, _choice)
    elif getattr(reply, "output", None) is not None:
        packed = _packed_items(reply.output, _output)
    else:
        packed = b"[]"
    usage = getattr(reply, "usage", None)
    if usage is not None:
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
    elif isinstance(getattr(reply, "prompt_tokens", None), int):
        prompt, completion = reply.prompt_tokens, 0
    else:
        return b"[%b,null]" % packed
    if type(prompt) is int and type(completion) is int:
        return b"[%b,[%d,%d]]" % (packed, prompt, completion)
    return b"[%b,%b]" % (packed, orjson.dumps((prompt, completion)))


def compact_error(error: Any) -> bytes:
    if error is None:
        return b""
    return orjson.dumps(
        (
            getattr(error, "status", None),
            getattr(error, "type", None),
            getattr(error, "code", None),
            getattr(error, "param", None),
            getattr(error, "message", str(error)),
        )
    )


_NO_RULE = object()
# What ``Journal._hold`` takes for the choices of a reply it cannot
# pack by itself.
_NOT_CHAT = object()


def _rule(reply: Any, error: Any) -> str | None:
    """The rule that answered: its id, ``default``, or None (no answer)."""
    scripted = getattr(error, "rule", None)
    if scripted:
        return str(scripted)
    if reply is not None and hasattr(reply, "rule"):
        return reply.rule or "default"
    return None


def _body(record: Record) -> Any:
    if record.body_size:
        return {"truncated": True, "bytes": record.body_size}
    if not record.body:
        return None
    try:
        return orjson.loads(record.body)
    except orjson.JSONDecodeError:
        return _text(record.body)


def _path(record: Record) -> str:
    return _text(record.uri.split(b"?", 1)[0])


def _model(record: Record, body: Any) -> str | None:
    if record.model:
        return _text(record.model)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return str(body["model"])
    return None


def reply_summary(reply: bytes, fault: str | None = None) -> dict[str, Any] | None:
    """Text, tool calls, usage and fault of a compacted reply."""
    if not reply:
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


def error_summary(error: bytes) -> dict[str, Any] | None:
    if not error:
        return None
    status, kind, code, param, message = orjson.loads(error)
    return {
        "status": status,
        "type": kind,
        "code": code,
        "param": param,
        "message": message,
    }


def view(record: Record) -> dict[str, Any]:
    """A record as ``GET /_mock/requests`` shows it."""
    body = _body(record)
    _, _, query = record.uri.partition(b"?")
    return {
        "id": record.id,
        "time": record.time,
        "method": _text(record.method),
        "path": _path(record),
        "query": _text(query) or None,
        "headers": _headers(record.headers),
        "body": body,
        "status": record.status,
        "model": _model(record, body),
        "rule": _text(record.rule) or None,
        "stream": isinstance(body, dict) and body.get("stream") is True,
        "reply": reply_summary(record.reply, _text(record.fault) or None),
        "error": error_summary(record.error),
    }


def _like(value: str | None, pattern: str) -> bool:
    if value is None:
        return False
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(value, pattern)
    return value == pattern


class Journal:
    """The newest ``size`` requests within ``max_bytes``; one ``bytes`` each.

    ``record`` is amortised O(1): the ring drops its oldest records until both bounds
    hold again (the newest record always stays).
    """

    def __init__(
        self, size: int = 1000, enabled: bool = True, max_bytes: int = 32 << 20
    ) -> None:
        self.enabled = enabled
        self.size = size
        self.max_bytes = max_bytes
        self._body_cap = min(MAX_BODY_BYTES, max_bytes // 4)
        # Bytes held by the records in the ring.
        self._bytes = 0
        self._ring: deque[bytes | Held] = deque()
        # Whether the ring holds answers as they came (``Held``).
        self._loose = False
        self._ids = itertools.count(1)
        # Records kept but not yet packed (``keep``): packed KEEP_BATCH at a
        # time, and all of them before anything reads the journal.
        self._kept: list[Answer] = []
        # Given each packed record at once, when a fleet shares a store.
        self.share: Callable[[bytes], None] | None = None

    @property
    def ring(self) -> deque[bytes]:
        """The packed records, oldest first (every kept one packed)."""
        self.flush()
        ring = self._ring
        if self._loose:
            self._ring = ring = deque(map(_packed, ring))
            self._loose = False
        return cast("deque[bytes]", ring)

    @property
    def held(self) -> int:
        """The records' size, packed (every kept one counted)."""
        self.flush()
        return self._bytes

    def configure(self, size: int, enabled: bool, max_bytes: int) -> None:
        """Resize (keeping the newest) and switch on or off, as a reload asks."""
        self.flush()
        self.enabled = enabled
        self.size = size
        self.max_bytes = max_bytes
        self._body_cap = min(MAX_BODY_BYTES, max_bytes // 4)
        self._trim()

    def _trim(self) -> None:
        ring = self._ring
        # Past ``size``, the oldest go in one plain loop (a flush's batch
        # once the ring is full), then more while past ``max_bytes``.
        popleft, held = ring.popleft, self._bytes
        for _ in range(min(len(ring) - self.size, len(ring) - 1)):
            old = popleft()
            held -= len(old) if type(old) is bytes else old[0]
        while len(ring) > 1 and held > self.max_bytes:
            old = popleft()
            held -= len(old) if type(old) is bytes else old[0]
        self._bytes = held

    def __len__(self) -> int:
        self.flush()
        return len(self._ring)

    def adopt(self, records: Iterable[bytes]) -> None:
        """Take packed records as they are (a fleet's, read from its store)."""
        for packed in records:
            self._ring.append(packed)
            self._bytes += len(packed)

    def heard(self, request: Any, status: int) -> None:
        """Journal an answered API request: the pipeline's ``first_byte``
        listener (its status is decided). ``request`` is the web layer's,
        read by attribute: ``api`` (whether the path is an API's: only
        those are journaled), ``started``, ``method``, ``uri``,
        ``raw_head`` (the head as it came, or None), ``requestHeaders``,
        ``body_bytes``, ``reply``, ``error`` and ``fault``."""
        if not self.enabled or not request.api:
            return
        head = request.raw_head
        if (
            head is not None
            and request.error is None
            and request.fault is None
            and self.share is None
        ):
            # ``keep``, inlined: on the hot path of every request.
            kept = self._kept
            kept.append(
                (request.started, head, request.body_bytes, status, request.reply)
            )
            if len(kept) >= KEEP_BATCH:
                self.flush()
            return
        packed = self.record(
            request.started,
            request.method,
            request.uri,
            head or request.requestHeaders,
            request.body_bytes,
            status,
            request.reply,
            request.error,
            request.fault,
        )
        if self.share is not None:
            self.share(packed)

    def keep(
        self, time: float, head: bytes, body: bytes | None, status: int, reply: Any
    ) -> None:
        """``record`` an answer (no error, no fault) whose head came as it
        was, later: KEEP_BATCH at a time (the packing code hot, in one loop),
        every one before anything reads the journal. For a process that
        shares nothing: a shared store needs each packed record at once."""
        kept = self._kept
        kept.append((time, head, body, status, reply))
        if len(kept) >= KEEP_BATCH:
            self.flush()

    def flush(self) -> None:
        """Pack what ``keep`` holds."""
        kept = self._kept
        if not kept:
            return
        self._kept = []
        held, size = self._hold(kept)
        self._ring.extend(held)
        self._bytes += size
        self._loose = True
        self._trim()

    def _hold(self, kept: list[Answer]) -> tuple[list[bytes | Held], int]:
        """Each answer as the ring holds it, in order, and their packed size.
        A chat reply alike to the one before, or whose tail was packed
        before, is held as it came (``Held``); anything else is packed. A
        call per record was about a third of what one cost, a lookup per
        part of its tail another third, packing it a third of the rest."""
        out: list[bytes | Held] = []
        add = out.append
        ids, cap = self._ids, self._body_cap
        total = 0
        # The parts of the reply the last tail was found for, that tail, and
        # the size of a record but for its head and body.
        seen_choices: Any = _NOT_CHAT
        seen_rule = seen_model = seen_prompt = seen_completion = None
        tail = b""
        fixed = 0
        for time, head, body, status, reply in kept:
            if body is not None and len(body) <= cap:
                try:
                    usage = reply.usage
                    choices = reply.choices
                    rule = reply.rule
                    model = reply.model
                    prompt = usage.prompt_tokens
                    completion = usage.completion_tokens
                except AttributeError:  # not a chat plan (or no plan)
                    choices = _NOT_CHAT
                if choices is not _NOT_CHAT and not (
                    choices is seen_choices
                    and rule == seen_rule
                    and model == seen_model
                    and prompt == seen_prompt
                    and completion == seen_completion
                ):
                    found = _TAILS.get((id(choices), rule, model, prompt, completion))
                    if found is not None and found[0] is choices:
                        tail = found[1]
                        fixed = _HEAD.size + len(tail)
                        seen_choices, seen_rule, seen_model = choices, rule, model
                        seen_prompt, seen_completion = prompt, completion
                    else:
                        choices = _NOT_CHAT
                if choices is not _NOT_CHAT:
                    size = fixed + len(head) + len(body)
                    total += size
                    add((size, next(ids), time, status, head, body, tail))
                    continue
            packed = self._pack((time, b"", b"", head, body, status, reply, None, None))
            total += len(packed)
            add(packed)
        return out, total

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
    ) -> bytes:
        """Keep a packed copy (returned, for a shared store to keep too); the
        request's own objects are all let go."""
        self.flush()  # (what ``keep`` holds came first)
        packed = self._pack(
            (time, method, uri, headers, body, status, reply, error, fault)
        )
        ring = self._ring
        ring.append(packed)
        held = self._bytes + len(packed)
        if len(ring) > self.size and len(ring) > 1:
            # The common case once the ring is full: the oldest goes.
            old = ring.popleft()
            held -= len(old) if type(old) is bytes else old[0]
        self._bytes = held
        if held > self.max_bytes or len(ring) > self.size:
            self._trim()
        return packed

    def _pack(self, entry: Entry) -> bytes:
        """One record's bytes (``record``'s arguments, as a tuple)."""
        time, method, uri, headers, body, status, reply, error, fault = entry
        body_size = 0
        if body is None:
            body = b""
        elif len(body) > self._body_cap:
            body_size, body = len(body), b""
        if type(headers) is bytes:
            # The request's head as it came (web/heads.py): its request line
            # holds the method and the URI.
            lines, method, uri = headers, b"", b""
        else:
            lines = _packed_headers(headers)
        model = getattr(reply, "model", None)
        model_ = model.encode() if isinstance(model, str) else b""
        rule: Any = _NO_RULE
        if error is None and reply is not None:
            rule = getattr(reply, "rule", _NO_RULE)
            rule_ = b"" if rule is _NO_RULE else (rule or "default").encode()
            error_ = b""
            reply_ = compact_reply(reply)
        else:
            found = _rule(reply, error)
            rule_ = found.encode() if found else b""
            error_ = compact_error(error)
            reply_ = compact_reply(reply)
        fault_ = fault.encode() if fault else b""
        tail = b"".join(
            (
                _TAIL.pack(
                    len(rule_), len(model_), len(reply_), len(error_), len(fault_)
                ),
                rule_,
                model_,
                reply_,
                error_,
                fault_,
            )
        )
        if error is None and fault is None and rule is not _NO_RULE:
            _remember_tail(reply, tail)
        return b"".join(
            (
                _HEAD.pack(
                    next(self._ids),
                    time,
                    status,
                    len(lines),
                    len(body),
                    body_size,
                    len(method),
                    len(uri),
                ),
                method,
                uri,
                lines,
                body,
                tail,
            )
        )

    def clear(self) -> int:
        """Forget everything; returns how many records there were."""
        count = len(self._ring) + len(self._kept)
        self._kept = []
        self._ring.clear()
        self._bytes = 0
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
        wanted_rule = None if rule is None else rule.encode()
        for packed in reversed(self.ring):  # (packs what ``keep`` holds)
            record = unpack(packed)
            if since is not None and record.time < since:
                continue
            if path is not None and not _like(_path(record), path):
                continue
            if wanted_rule is not None and record.rule != wanted_rule:
                continue
            shown = view(record)
            if model is not None and not _like(shown["model"], model):
                continue
            out.append(shown)
            if limit is not None and len(out) >= limit:
                break
        out.reverse()
        return out
