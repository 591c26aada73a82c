"""The request journal: what clients sent and what they got, in a bounded ring.

Recording sits on the hot path of every ``/v1`` request.  What it costs is
mostly memory, not code: each object a record keeps alive is one more the
allocator cannot reuse while it is hot, and one more cold free when the ring
wraps (keeping the request's own objects cost 9% of throughput, a tuple of
compact copies 4-7%; see benchmarks/README.md).  So a record is one
``bytes``: a fixed head, then the raw method, URI, headers and body and
compact reply, error and fault.
Everything readable -- lower-cased headers with secrets redacted, the parsed
body, the JSON summary -- is built when someone reads the journal.
Pure: no Twisted (header stores are duck-typed), no clock of its own.
"""

from __future__ import annotations

import fnmatch
import itertools
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

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
# Records ``Journal.keep`` holds before it packs them.
KEEP_BATCH = 64
# ``Journal.record``'s arguments: time, method, uri, headers, body, status,
# reply, error, fault.
Entry = tuple[float, bytes, bytes, Any, "bytes | None", int, Any, Any, "str | None"]


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


# A record's head: id, time, status, the size of a body too large to keep,
# then the length of each field that follows it, in this order.
_HEAD = struct.Struct("<QdHQ9I")


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


def unpack(record: bytes) -> Record:
    """A packed record's head and fields."""
    record_id, time, status, body_size, *lengths = _HEAD.unpack_from(record)
    fields: list[bytes] = []
    at = _HEAD.size
    for length in lengths:
        fields.append(record[at : at + length])
        at += length
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
# What ``Journal._pack_kept`` adds to a record's head, method, URI, head
# lines and body, by (``id`` of the choices, rule, model): the choices kept
# (so the id cannot be reused), the sizes of the rule, the model and the
# reply up to its counts, and those bytes.
_TAILS: dict[tuple[int, Any, Any], tuple[Any, int, int, int, bytes]] = {}
# A reply's packed token counts (their tail), by (prompt, completion).
_COUNTS: dict[tuple[int, int], bytes] = {}
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
        self._ring: deque[bytes] = deque()
        self._ids = itertools.count(1)
        # Records kept but not yet packed (``keep``): packed KEEP_BATCH at a
        # time, and all of them before anything reads the journal.
        self._kept: list[Entry] = []

    @property
    def ring(self) -> deque[bytes]:
        """The packed records, oldest first (every kept one packed)."""
        self.flush()
        return self._ring

    @property
    def held(self) -> int:
        """Bytes held by the packed records (every kept one packed)."""
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
        while len(ring) > 1 and (len(ring) > self.size or self._bytes > self.max_bytes):
            self._bytes -= len(ring.popleft())

    def __len__(self) -> int:
        return len(self.ring)

    def adopt(self, records: Iterable[bytes]) -> None:
        """Take packed records as they are (a fleet's, read from its store)."""
        for packed in records:
            self._ring.append(packed)
            self._bytes += len(packed)

    def keep(self, *entry: Any) -> None:
        """``record(*entry)``, packed later: KEEP_BATCH records at a time (the
        packing code hot, in one loop), and every one before anything reads
        the journal. For a process that shares nothing: a shared store needs
        each packed record at once."""
        kept = self._kept
        kept.append(entry)
        if len(kept) >= KEEP_BATCH:
            self.flush()

    def flush(self) -> None:
        """Pack what ``keep`` holds."""
        kept = self._kept
        if not kept:
            return
        self._kept = []
        packs = self._pack_kept(kept)
        self._ring.extend(packs)
        self._bytes += sum(map(len, packs))
        self._trim()

    def _pack_kept(self, kept: list[Entry]) -> list[bytes]:
        """Each entry packed, in order. Inlined for the common case (a plan
        whose choices, rule and model were packed before, no error or fault,
        the request's head as it came): a call per record was about a third
        of what a record cost."""
        out: list[bytes] = []
        add = out.append
        ids, cap, head = self._ids, self._body_cap, _HEAD.pack
        for entry in kept:
            time, method, uri, headers, body, status, reply, error, fault = entry
            if (
                error is None
                and fault is None
                and type(headers) is bytes
                and body is not None
                and len(body) <= cap
            ):
                choices = getattr(reply, "choices", None)
                usage = getattr(reply, "usage", None)
                tail = _TAILS.get(
                    (
                        id(choices),
                        getattr(reply, "rule", _NO_RULE),
                        getattr(reply, "model", None),
                    )
                )
                if (
                    tail is not None
                    and tail[0] is choices
                    and usage is not None
                    and type(prompt := usage.prompt_tokens) is int
                    and type(completion := usage.completion_tokens) is int
                ):
                    counts = _COUNTS.get((prompt, completion))
                    if counts is None:
                        counts = remember(
                            _COUNTS,
                            (prompt, completion),
                            b"%d,%d]]" % (prompt, completion),
                            MAX_PACKED,
                        )
                    _, rule_size, model_size, reply_size, fields = tail
                    add(
                        b"".join(
                            (
                                head(
                                    next(ids),
                                    time,
                                    status,
                                    0,
                                    len(method),
                                    len(uri),
                                    len(headers),
                                    len(body),
                                    rule_size,
                                    model_size,
                                    reply_size + len(counts),
                                    0,
                                    0,
                                ),
                                method,
                                uri,
                                headers,
                                body,
                                fields,
                                counts,
                            )
                        )
                    )
                    continue
            add(self._pack(entry))
        return out

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
        packed = self._pack(
            (time, method, uri, headers, body, status, reply, error, fault)
        )
        ring = self._ring
        ring.append(packed)
        held = self._bytes + len(packed)
        if len(ring) > self.size and len(ring) > 1:
            # The common case once the ring is full: the oldest goes.
            held -= len(ring.popleft())
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
        # On the hot path of every request, so the common case is inlined:
        # a plan (no error) whose choices are packed already (``_packed_items``).
        # (bytes: the request's head as it came, a plain one: web/heads.py)
        headers_ = headers if type(headers) is bytes else _packed_headers(headers)
        model = getattr(reply, "model", None)
        model_ = model.encode() if isinstance(model, str) else b""
        if error is None and reply is not None:
            rule: Any = getattr(reply, "rule", _NO_RULE)
            rule_ = b"" if rule is _NO_RULE else (rule or "default").encode()
            error_ = b""
            choices = getattr(reply, "choices", None)
            known = _PACKED.get(id(choices))
            usage = getattr(reply, "usage", None)
            if (
                known is not None
                and known[0] is choices
                and usage is not None
                and type(prompt := usage.prompt_tokens) is int
                and type(completion := usage.completion_tokens) is int
            ):
                reply_ = b"[%b,[%d,%d]]" % (known[1], prompt, completion)
                tail_key = (id(choices), rule, model)
                if (
                    fault is None
                    and (model is None or type(model) is str)
                    and tail_key not in _TAILS
                ):
                    # What ``_pack_kept`` needs to pack the next alike (the
                    # choices stay in the table, so the id is theirs).
                    remember(
                        _TAILS,
                        tail_key,
                        (
                            choices,
                            len(rule_),
                            len(model_),
                            len(known[1]) + 3,
                            b"%b%b[%b,[" % (rule_, model_, known[1]),
                        ),
                        MAX_PACKED,
                    )
            else:
                reply_ = compact_reply(reply)
        else:
            found = _rule(reply, error)
            rule_ = found.encode() if found else b""
            error_ = compact_error(error)
            reply_ = compact_reply(reply)
        fault_ = fault.encode() if fault else b""
        return b"".join(
            (
                _HEAD.pack(
                    next(self._ids),
                    time,
                    status,
                    body_size,
                    len(method),
                    len(uri),
                    len(headers_),
                    len(body),
                    len(rule_),
                    len(model_),
                    len(reply_),
                    len(error_),
                    len(fault_),
                ),
                method,
                uri,
                headers_,
                body,
                rule_,
                model_,
                reply_,
                error_,
                fault_,
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
