"""A request head read in one pass, when it is the common, plain kind.

twisted.web reads a head line by line (``LineReceiver``, then
``lineReceived`` and ``headerReceived`` per line): about a fifth of what a
small request costs. Most heads arrive whole in one read and hold nothing
unusual, so ``read_head`` takes such a head apart at once. It accepts only a
subset of what twisted.web accepts; for anything else (a continuation line,
``Transfer-Encoding``, an unknown method, a byte out of place, a limit
reached) it returns None and the channel hands the bytes to twisted.web's
own parser, which answers as it always has. So a malformed or hostile head
meets exactly the code it met before, and the fast path never decides an
error.
"""

from __future__ import annotations

import re
from typing import TypeVar

from twisted.web.http_headers import Headers, InvalidHeaderName

from mockai_tw.tables import remember

# Methods this server answers; others go the long way (and are refused there).
_REQUEST_LINE = re.compile(
    rb"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) ([\x21-\x7e]+) (HTTP/1\.[01])"
)
# twisted.web's spelling of a header name (what ``Headers`` keys by), for
# the names seen, in requests and in the responses this server sets; bounded,
# so a client sending new names costs no memory.
_NAMES: dict[bytes, bytes] = {}
_MAX_NAMES = 1024


def canonical_name(name: bytes) -> bytes | None:
    """``name`` as twisted.web keys it, or None if it is not a token."""
    found = _NAMES.get(name)
    if found is None:
        try:
            ((found, _),) = Headers({name: [b""]}).getAllRawHeaders()
        except InvalidHeaderName:
            return None
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[name] = found
    return found


# Request and header lines seen before, read: a client sends the same lines
# request after request (its host, key, content type). Bounded by count and
# line length, and emptied when full, so new lines cost no memory beyond it.
_LINES: dict[bytes, tuple[bytes, bytes, int]] = {}
_FIRST_LINES: dict[bytes, tuple[bytes, ...]] = {}
_MAX_LINES = 1024
_MAX_LINE = 256
T = TypeVar("T")


def _read_line(line: bytes) -> tuple[bytes, bytes, int] | None:
    """A header line's name as twisted.web keys it, its value, and its
    Content-Length (-1 for any other header); None for the long way."""
    name, colon, value = line.partition(b":")
    if not colon:
        return None
    canonical = canonical_name(name)
    if canonical is None:
        return None
    value = value.strip(b" \t")
    declared = -1
    if canonical == b"Content-Length":
        if not value.isdigit():
            return None
        declared = int(value)
    elif canonical == b"Transfer-Encoding":
        return None
    return _remember(_LINES, line, (canonical, value, declared))


def _remember(lines: dict[bytes, T], line: bytes, read: T) -> T:
    if len(line) <= _MAX_LINE:
        remember(lines, line, read, _MAX_LINES)
    return read


class Head:
    """What twisted.web would have gathered from the head's lines."""

    __slots__ = ("command", "count", "headers", "length", "path", "size", "version")

    def __init__(
        self,
        command: bytes,
        path: bytes,
        version: bytes,
        headers: dict[bytes, tuple[bytes, ...]],
        length: int,
        count: int,
        size: int,
    ) -> None:
        self.command = command
        self.path = path
        self.version = version
        # Raw values by canonical name, in arrival order (``Headers``' own form).
        self.headers = headers
        # Content-Length (0 without one).
        self.length = length
        # Header lines, and bytes of all lines less their CRLFs (twisted.web's
        # ``_receivedHeaderCount`` and ``_receivedHeaderSize``).
        self.count = count
        self.size = size


# Whole heads seen before, read: a load generator sends the same head again
# and again. Shared (the reader copies ``headers`` before a request holds
# them); bounded as the lines are, and emptied when full.
_HEADS: dict[bytes, Head] = {}
_MAX_HEADS = 256
_MAX_HEAD = 1024


def read_head(head: bytes, max_headers: int, max_size: int) -> Head | None:
    """The head (the bytes before its blank line) taken apart, or None for
    twisted.web's parser to read it. What is returned may be shared: read
    only (copy ``headers`` to keep them)."""
    known = _HEADS.get(head)
    if known is not None:
        if known.count > max_headers or known.size > max_size:
            return None
        return known
    read = _read_head(head, max_headers, max_size)
    if read is not None and len(head) <= _MAX_HEAD:
        remember(_HEADS, head, read, _MAX_HEADS)
    return read


def _read_head(head: bytes, max_headers: int, max_size: int) -> Head | None:
    lines = head.split(b"\r\n")
    count = len(lines) - 1
    size = len(head) - 2 * count
    if count > max_headers or size > max_size:
        return None
    # No NUL, and no CR or LF but the line ends: checked once for the whole
    # head (``int in bytes`` is the fast membership test; ``b"\0" in`` is not).
    if 0 in head or head.count(10) != count or head.count(13) != count:
        return None
    first = lines[0]
    request_line = _FIRST_LINES.get(first)
    if request_line is None:
        matched = _REQUEST_LINE.fullmatch(first)
        if matched is None:
            return None
        request_line = _remember(_FIRST_LINES, first, matched.groups())
    headers: dict[bytes, tuple[bytes, ...]] = {}
    length = -1
    known = _LINES
    for k in range(1, count + 1):
        line = lines[k]
        read = known.get(line)
        if read is None:
            read = _read_line(line)
            if read is None:
                return None
        canonical, value, declared = read
        if declared >= 0:
            if length >= 0:
                return None
            length = declared
        # Tuples, as Headers' lists would be (nothing appends to a request's
        # headers once read): a tuple of bytes leaves the garbage collector's
        # lists at its first collection, and an open stream holds its request.
        values = headers.get(canonical)
        headers[canonical] = (value,) if values is None else (*values, value)
    command, path, version = request_line
    return Head(command, path, version, headers, max(length, 0), count, size)
