"""The recording file: one JSON file per interaction, named to diff well.

``<slug>-<key hash>-<n>.json``: the slug is the route and the prompt's first
words, the hash is the match key's, ``n`` orders recordings that share a key
(they replay as a sequence).  Bodies and SSE events are kept as the exact
text received (base64 when not UTF-8), so a replay is byte-exact.  Loading is
bounded and every failure names the file and the reason.  Pure apart from
the file reads and writes it exists for; no Twisted.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from mockai_tw.recording.keys import MatchKey, parsed_body
from mockai_tw.recording.policy import Policy
from mockai_tw.recording.providers import Provider, provider_for

FORMAT = 1
#: A recording file larger than this is refused at load.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: A directory holding more recording files than this is refused.
MAX_FILES = 100_000
SUFFIXES = (".json", ".yaml", ".yml")
_NAME = re.compile(r"-([0-9a-f]{12})-(\d{1,6})\.(json|ya?ml)$")


class RecordingError(Exception):
    """A recording that cannot be loaded or written: ``path`` and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """One SSE event exactly as received (its blank line included)."""

    offset_ms: float
    data: bytes


@dataclass(frozen=True)
class Recording:
    id: str
    file: str
    key: MatchKey
    # Order among recordings of one key (the ``n`` of the file name).
    seq: int
    method: str
    path: str
    query: str
    request_headers: Mapping[str, str]
    request_body: bytes
    status: int
    headers: tuple[tuple[str, str], ...]
    # A plain answer's body; a stream's events (then ``body`` is empty).
    body: bytes
    events: tuple[Event, ...] = ()
    # Request to last byte, in milliseconds.
    duration_ms: float = 0.0
    recorded_at: str = ""
    # The answer's total tokens, if it says (a rate limit charges them).
    tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def streamed(self) -> bool:
        return bool(self.events)

    @property
    def provider(self) -> Provider:
        return provider_for(self.path)

    @property
    def content_type(self) -> str:
        for name, value in self.headers:
            if name == "content-type":
                return value
        return "text/event-stream" if self.events else "application/json"


# --- text in files -------------------------------------------------------------


def _text(data: bytes, name: str) -> dict[str, Any]:
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _bytes(raw: Mapping[str, Any], name: str, where: str) -> bytes:
    if name in raw:
        value = raw[name]
        if not isinstance(value, str):
            raise ValueError(f"{where}{name}: must be a string")
        return value.encode("utf-8")
    if f"{name}_base64" in raw:
        value = raw[f"{name}_base64"]
        try:
            return base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise ValueError(f"{where}{name}_base64: not base64") from None
    return b""


def usage_tokens(values: Iterable[Any]) -> int:
    """Total tokens from the first ``usage`` found (any provider's spelling)."""
    for value in values:
        if not isinstance(value, dict):
            continue
        usage = value.get("usage") or value.get("usageMetadata")
        if not isinstance(usage, dict):
            inner = value.get("response") or value.get("message")
            usage = inner.get("usage") if isinstance(inner, dict) else None
        if isinstance(usage, dict):
            for name in ("total_tokens", "totalTokenCount"):
                if isinstance(usage.get(name), int):
                    return int(usage[name])
            parts = [
                usage.get(n)
                for n in ("input_tokens", "output_tokens", "prompt_tokens")
                if isinstance(usage.get(n), int)
            ]
            if parts:
                return int(sum(parts))  # type: ignore[arg-type]
    return 0


def event_payloads(events: Iterable[Event]) -> list[Any]:
    """Each event's ``data:`` as JSON (None where it is not)."""
    out = []
    for event in events:
        lines = event.data.decode("utf-8", "replace").splitlines()
        data = "\n".join(
            line[5:].removeprefix(" ") for line in lines if line.startswith("data:")
        )
        try:
            out.append(orjson.loads(data) if data else None)
        except orjson.JSONDecodeError:
            out.append(None)
    return out


# --- writing -------------------------------------------------------------------


def slug(path: str, prompt: str | None) -> str:
    """A readable stem: the route's last parts and the prompt's first words."""
    route = [p for p in re.split(r"[/:]", path.split("?", 1)[0]) if p][-2:]
    words = re.findall(r"[a-z0-9]+", (prompt or "").lower())[:6]
    text = "-".join([*route, *words]).lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:60].rstrip("-") or "recording"


def as_document(rec: Recording) -> dict[str, Any]:
    response: dict[str, Any] = {
        "status": rec.status,
        "headers": dict(rec.headers),
        "duration_ms": round(rec.duration_ms, 3),
    }
    if rec.events:
        response["events"] = [
            {"offset_ms": round(e.offset_ms, 3), **_text(e.data, "data")}
            for e in rec.events
        ]
    else:
        response.update(_text(rec.body, "body"))
    return {
        "mockai_recording": FORMAT,
        "recorded_at": rec.recorded_at,
        "key": rec.key.as_dict(),
        "request": {
            "method": rec.method,
            "path": rec.path,
            "query": rec.query,
            "headers": dict(rec.request_headers),
            **_text(rec.request_body, "body"),
        },
        "response": response,
    }


def next_name(directory: str, stem: str, digest: str) -> tuple[str, int]:
    """A free file name for one more recording of ``digest``, and its ``n``."""
    taken = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            found = _NAME.search(name)
            if found and found.group(1) == digest:
                taken = max(taken, int(found.group(2)))
    seq = taken + 1
    return os.path.join(directory, f"{stem}-{digest}-{seq:03d}.json"), seq


def save(rec: Recording) -> None:
    """Write ``rec`` to ``rec.file`` atomically (a reader never sees half)."""
    directory = os.path.dirname(rec.file) or "."
    os.makedirs(directory, exist_ok=True)
    data = orjson.dumps(as_document(rec), option=orjson.OPT_INDENT_2) + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=".rec-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, rec.file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- reading -------------------------------------------------------------------


def _read(path: str) -> Any:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise RecordingError(path, f"is larger than {MAX_FILE_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise RecordingError(path, f"cannot read: {error.strerror or error}") from None
    try:
        if path.endswith(".json"):
            return orjson.loads(data)
        return yaml.safe_load(data.decode("utf-8"))
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RecordingError(path, f"not valid JSON/YAML: {reason}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a mapping")
    return value


def parse_document(doc: Any, path: str, policy: Policy) -> Recording:
    """A loaded file as a Recording; raises RecordingError naming the key."""
    try:
        return _parse(doc, path, policy)
    except ValueError as error:
        raise RecordingError(path, str(error)) from None


def _parse(doc: Any, path: str, policy: Policy) -> Recording:
    doc = _mapping(doc, "the top level")
    if doc.get("mockai_recording") != FORMAT:
        raise ValueError(f"mockai_recording: must be {FORMAT} (the format version)")
    request = _mapping(doc.get("request"), "request")
    response = _mapping(doc.get("response"), "response")
    method, route = request.get("method"), request.get("path")
    if not isinstance(method, str) or not isinstance(route, str):
        raise ValueError("request.method and request.path: must be strings")
    body = _bytes(request, "body", "request.")
    status = response.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("response.status: must be an HTTP status (100-599)")
    headers = _mapping(response.get("headers") or {}, "response.headers")
    events = []
    for i, raw in enumerate(response.get("events") or []):
        raw = _mapping(raw, f"response.events[{i}]")
        offset = raw.get("offset_ms")
        if not isinstance(offset, (int, float)) or offset < 0:
            raise ValueError(f"response.events[{i}].offset_ms: must be a number >= 0")
        events.append(Event(float(offset), _bytes(raw, "data", f"events[{i}].")))
    answer = b"" if events else _bytes(response, "body", "response.")
    provider = provider_for(route)
    key = policy.key(method, route, body, provider)
    found = _NAME.search(os.path.basename(path))
    seq = int(found.group(2)) if found else 0
    payloads = event_payloads(events) if events else [parsed_body(answer)]
    duration = response.get("duration_ms", 0.0)
    return Recording(
        id=os.path.splitext(os.path.basename(path))[0],
        file=path,
        key=key,
        seq=seq,
        method=method.upper(),
        path=route,
        query=str(request.get("query") or ""),
        request_headers={
            str(k): str(v) for k, v in (request.get("headers") or {}).items()
        },
        request_body=body,
        status=status,
        headers=tuple((str(k).lower(), str(v)) for k, v in headers.items()),
        body=answer,
        events=tuple(events),
        duration_ms=float(duration) if isinstance(duration, (int, float)) else 0.0,
        recorded_at=str(doc.get("recorded_at") or ""),
        tokens=usage_tokens(reversed(payloads)),
    )


def load_dir(directory: str, policy: Policy) -> tuple[Recording, ...]:
    """Every recording in ``directory`` (not recursive), in replay order.

    A missing directory is an empty set (record mode creates it); anything
    unreadable is a RecordingError naming the file.
    """
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIXES))
    except FileNotFoundError:
        return ()
    except OSError as error:
        raise RecordingError(
            directory, f"cannot list: {error.strerror or error}"
        ) from None
    if len(names) > MAX_FILES:
        raise RecordingError(directory, f"holds more than {MAX_FILES} recordings")
    out = [
        parse_document(_read(p), p, policy)
        for p in (os.path.join(directory, n) for n in names)
    ]
    ids: dict[str, str] = {}
    for rec in out:
        if rec.id in ids:
            raise RecordingError(rec.file, f"has the same id as {ids[rec.id]}")
        ids[rec.id] = rec.file
    return tuple(sorted(out, key=lambda r: (r.key.digest, r.seq, r.id)))
