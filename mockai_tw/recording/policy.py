"""What a recording may hold and how a request is keyed: one object per config.

Redaction (headers by name, bodies by regex) and the match key's ignored
fields, built once from ``recording:``.  Request bodies are redacted
*before* they are keyed, on the live side as on the file side, so a
redacted prompt still matches its recording.  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mockai_tw.recording.keys import MatchKey, ignore_paths, match_key, parsed_body
from mockai_tw.recording.paths import Segment
from mockai_tw.recording.providers import ALWAYS_REDACTED, Provider

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Policy:
    ignore: tuple[tuple[Segment, ...], ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    headers: frozenset[str] = frozenset(ALWAYS_REDACTED)

    @classmethod
    def of(
        cls,
        ignore_fields: Sequence[str] = (),
        redact: Sequence[str] = (),
        redact_headers: Iterable[str] = (),
    ) -> Policy:
        return cls(
            ignore_paths(ignore_fields),
            tuple(re.compile(p) for p in redact),
            frozenset((*ALWAYS_REDACTED, *(h.lower() for h in redact_headers))),
        )

    def text(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def body(self, data: bytes) -> bytes:
        """``data`` with every redaction pattern replaced (UTF-8 text only)."""
        if not self.patterns:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        return self.text(text).encode("utf-8")

    def header_map(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers as a file holds them: lower-case names, secrets gone."""
        out: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in self.headers:
                continue
            out[lower] = self.text(value)
        return out

    def key(self, method: str, path: str, data: bytes, provider: Provider) -> MatchKey:
        """The match key of a request as it arrived (redacted first)."""
        return match_key(
            method, path, parsed_body(self.body(data)), provider, self.ignore
        )


def header_pairs(headers: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in headers.items()]
