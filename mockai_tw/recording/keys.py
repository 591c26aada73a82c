"""The match key: what makes two requests "the same" for replay.

The route and the body as sent, with the provider's volatile fields and
``recording.ignore_fields`` dropped, canonicalised (keys sorted, no
whitespace) so key order and formatting do not matter.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mockai_tw.recording.paths import Segment, drop, parse_path
from mockai_tw.recording.providers import Provider

#: Characters of the key's hash used in file names and ids.
DIGEST_CHARS = 12


@dataclass(frozen=True)
class MatchKey:
    method: str
    # The route without its query (Azure's deployment, Gemini's model are in it).
    path: str
    model: str | None
    # The body as matched: volatile fields gone.
    body: Any

    @property
    def canonical(self) -> bytes:
        return orjson.dumps(
            {"method": self.method, "path": self.path, "body": self.body},
            option=orjson.OPT_SORT_KEYS,
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()[:DIGEST_CHARS]

    def describe(self) -> str:
        """The key in one line, as error messages and listings show it."""
        model = f" model={self.model}" if self.model else ""
        return f"{self.method} {self.path}{model} #{self.digest}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "model": self.model,
            "body": self.body,
            "digest": self.digest,
        }


def parsed_body(data: bytes) -> Any:
    """A body as JSON, or a stand-in naming its bytes when it is not JSON."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"$raw_sha256": hashlib.sha256(data).hexdigest()}


def ignore_paths(fields: Sequence[str]) -> tuple[tuple[Segment, ...], ...]:
    return tuple(parse_path(f) for f in fields)


def match_key(
    method: str,
    path: str,
    body: Any,
    provider: Provider,
    ignore: Sequence[tuple[Segment, ...]] = (),
) -> MatchKey:
    """The key of one request: ``body`` already parsed (``parsed_body``)."""
    model = body.get("model") if isinstance(body, dict) else None
    matched = body
    for segments in (*(parse_path(f) for f in provider.volatile), *ignore):
        matched = drop(matched, segments)
    return MatchKey(
        method.upper(),
        path.split("?", 1)[0],
        model if isinstance(model, str) else None,
        matched,
    )
