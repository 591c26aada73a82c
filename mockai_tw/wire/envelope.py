"""What every chunk of one stream repeats, encoded once per stream.

Chat and legacy completion chunks differ only in their choices: the id,
object, created, model and fingerprint around them, the ``usage: null`` that
``include_usage`` adds, and Azure's ``content_filter_results`` are the same.
"""

from __future__ import annotations

from typing import Any

import orjson

from mockai_tw.wire.sse import data_event

# What the original server (and Azure) attach to every choice.
CONTENT_FILTER_RESULTS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def head(fields: dict[str, Any]) -> bytes:
    """A chunk's bytes up to its first choice."""
    return orjson.dumps(fields)[:-1] + b',"choices":['


class Envelope:
    def __init__(
        self, fields: dict[str, Any] | None, include_usage: bool, content_filter: bool
    ) -> None:
        # None: no head, for the bytes every stream shares after its own head.
        self.head = b"" if fields is None else head(fields)
        self.tail = b'],"usage":null}' if include_usage else b"]}"
        self.filter = CONTENT_FILTER_RESULTS if content_filter else None

    def event(self, choice: dict[str, Any]) -> bytes:
        """One chunk carrying ``choice``."""
        if self.filter is not None:
            choice["content_filter_results"] = self.filter
        return data_event(self.head + orjson.dumps(choice) + self.tail)

    def usage_event(self, usage: dict[str, Any]) -> bytes:
        """The last chunk ``include_usage`` adds: no choices, the usage."""
        return data_event(self.head + b'],"usage":' + orjson.dumps(usage) + b"}")
