"""A recording as an ordinary rule: the same answer, editable, kept as a scenario.

The rule matches the recording's endpoint, model and last user message and
answers its text (or its error), with the recorded pacing as the rule's
``stream`` timing.  Pure: the control API parses the result with the rule
parser before showing it, so what it returns always loads.
"""

from __future__ import annotations

import itertools
from typing import Any

from mockai_tw.recording.files import Recording, event_payloads
from mockai_tw.recording.keys import parsed_body
from mockai_tw.recording.providers import prompt_text


def rule_endpoint(path: str) -> str | None:
    """The rules' name for the endpoint at ``path`` (None: not a rule's)."""
    route = path.split("?", 1)[0]
    if ":generateContent" in route or ":streamGenerateContent" in route:
        return "gemini"
    if ":embedContent" in route or ":batchEmbedContents" in route:
        return "embeddings"
    for suffix, name in (
        ("/chat/completions", "chat"),
        ("/completions", "completions"),
        ("/responses", "responses"),
        ("/messages", "messages"),
        ("/embeddings", "embeddings"),
        ("/moderations", "moderations"),
    ):
        if route.endswith(suffix):
            return name
    return None


def _error(rec: Recording) -> dict[str, Any]:
    body = parsed_body(rec.body)
    error = body.get("error") if isinstance(body, dict) else None
    out: dict[str, Any] = {"status": rec.status}
    if isinstance(error, dict):
        for key in ("message", "type", "code", "param"):
            if isinstance(error.get(key), str):
                out[key] = error[key]
    return out


def recorded_text(rec: Recording) -> str:
    """The answer's text: the body's, or the stream's pieces joined."""
    payloads = event_payloads(rec.events) if rec.events else [parsed_body(rec.body)]
    return "".join(rec.provider.text(p) for p in payloads)


def promote(rec: Recording) -> dict[str, Any]:
    """The rule (as the config's ``rules:`` holds one) answering like ``rec``."""
    match: dict[str, Any] = {}
    endpoint = rule_endpoint(rec.path)
    if endpoint is not None:
        match["endpoint"] = endpoint
    if rec.key.model:
        match["model"] = rec.key.model
    prompt = prompt_text(rec.provider, parsed_body(rec.request_body))
    if prompt:
        match["content"] = {"equals": prompt}
    rule: dict[str, Any] = {"name": f"recorded-{rec.key.digest}-{rec.seq}"}
    if match:
        rule["match"] = match
    if rec.status >= 400:
        rule["answer"] = {"error": _error(rec)}
        return rule
    rule["answer"] = {"text": recorded_text(rec)}
    if len(rec.events) > 1:
        offsets = [e.offset_ms for e in rec.events]
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        rule["stream"] = {
            "ttft_ms": round(offsets[0], 1),
            "interval_ms": round(sum(gaps) / len(gaps), 1),
        }
    return rule
