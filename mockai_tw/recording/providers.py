"""What differs between providers when recording: one table entry each.

A provider says which header carries the upstream key, which body fields
are volatile (dropped from the match key), which response headers are worth
keeping, and how to read the answer's text and the prompt (for promotion to
a rule).  Pure data and small functions: no Twisted, no I/O.  A new provider
is a new entry here, not a new code path.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Request headers that never go upstream as the client sent them: the
#: credentials (replaced by the upstream key), hop-by-hop headers, and
#: what the HTTP client sets itself.
CREDENTIAL_HEADERS = (
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "proxy-authorization",
    "cookie",
)
HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
    "expect",
)
#: Response headers never relayed as received (Twisted frames the body).
RESPONSE_HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "date",
    "server",
)
#: Never in a recording file, whatever the config says.
ALWAYS_REDACTED = (*CREDENTIAL_HEADERS, "set-cookie")


@dataclass(frozen=True)
class Provider:
    name: str
    # The header the upstream key goes in, and what comes before the key.
    key_header: str
    key_prefix: str
    # Body fields (recording/paths.py syntax) the match key never holds.
    volatile: tuple[str, ...]
    # Response headers a recording keeps (globs, lower case).
    keep: tuple[str, ...]
    # The answer's text in one body or one stream event's payload.
    text: Callable[[Any], str]
    # The last user message of a request body, if it is text.
    prompt: Callable[[Any], str | None]

    def keeps(self, header: str) -> bool:
        name = header.lower()
        return any(fnmatch.fnmatchcase(name, glob) for glob in self.keep)


def _parts_text(content: Any, kinds: Sequence[str] = ("text",)) -> str | None:
    """A message's text: a string, or its text parts joined (as rules see it)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p["text"]
            for p in content
            if isinstance(p, dict)
            and isinstance(p.get("text"), str)
            and p.get("type", "text") in kinds
        ]
        return "".join(texts) if texts else None
    return None


def _last_user(messages: Any, kinds: Sequence[str] = ("text",)) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return _parts_text(message.get("content"), kinds)
    return None


def _first_choice(value: dict[str, Any]) -> dict[str, Any]:
    choices = value.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return choice
    return {}


def _openai_text(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if "choices" in value:
        choice = _first_choice(value)
        for holder in (choice.get("message"), choice.get("delta")):
            if isinstance(holder, dict) and isinstance(holder.get("content"), str):
                return str(holder["content"])
        text = choice.get("text")
        return text if isinstance(text, str) else ""
    if value.get("type") == "response.output_text.delta":
        delta = value.get("delta")
        return delta if isinstance(delta, str) else ""
    if value.get("object") == "response":
        out = []
        for item in value.get("output") or []:
            if isinstance(item, dict) and item.get("type") == "message":
                out.append(_parts_text(item.get("content"), ("output_text",)) or "")
        return "".join(out)
    return ""


def _openai_prompt(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if "messages" in body:
        return _last_user(body["messages"])
    if "input" in body:
        given = body["input"]
        if isinstance(given, str):
            return given
        return _last_user(given, ("input_text", "text"))
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else None


def _anthropic_text(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if value.get("type") == "message":
        return _parts_text(value.get("content")) or ""
    delta = value.get("delta")
    if value.get("type") == "content_block_delta" and isinstance(delta, dict):
        text = delta.get("text")
        return text if isinstance(text, str) else ""
    return ""


def _gemini_text(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    candidates = value.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return ""
    content = candidates[0].get("content") if isinstance(candidates[0], dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return _parts_text(parts) or ""


def _gemini_prompt(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    contents = body.get("contents")
    if not isinstance(contents, list):
        return None
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            return _parts_text(content.get("parts"))
    return None


_OPENAI_VOLATILE = (
    "user",
    "metadata",
    "seed",
    "stream_options",
    "previous_response_id",
    "messages[*].tool_calls[*].id",
    "messages[*].tool_call_id",
    "input[*].id",
    "input[*].call_id",
)
_OPENAI_KEEP = (
    "content-type",
    "openai-*",
    "x-ratelimit-*",
    "x-request-id",
    "retry-after",
    "retry-after-ms",
)

OPENAI = Provider(
    "openai",
    "authorization",
    "Bearer ",
    _OPENAI_VOLATILE,
    _OPENAI_KEEP,
    _openai_text,
    _openai_prompt,
)
AZURE = Provider(
    "azure",
    "api-key",
    "",
    _OPENAI_VOLATILE,
    (*_OPENAI_KEEP, "apim-request-id", "x-ms-*"),
    _openai_text,
    _openai_prompt,
)
ANTHROPIC = Provider(
    "anthropic",
    "x-api-key",
    "",
    (
        "metadata",
        "messages[*].content[*].id",
        "messages[*].content[*].tool_use_id",
    ),
    ("content-type", "request-id", "anthropic-*", "retry-after", "x-request-id"),
    _anthropic_text,
    _last_user,
)
GEMINI = Provider(
    "gemini",
    "x-goog-api-key",
    "",
    (
        "contents[*].parts[*].functionCall.id",
        "contents[*].parts[*].functionResponse.id",
    ),
    ("content-type", "x-request-id"),
    _gemini_text,
    _gemini_prompt,
)


def provider_for(path: str) -> Provider:
    """The provider whose route ``path`` (the request's, no query) is."""
    if path.startswith("/openai/"):
        return AZURE
    if path.startswith("/v1/messages"):
        return ANTHROPIC
    if (
        path.startswith("/v1beta/")
        or ":generateContent" in path
        or (
            ":streamGenerateContent" in path
            or ":countTokens" in path
            or ":embedContent" in path
            or ":batchEmbedContents" in path
        )
    ):
        return GEMINI
    return OPENAI


def prompt_text(provider: Provider, body: Any) -> str | None:
    """The prompt of ``body`` as ``provider`` reads it (None: none as text)."""
    # Anthropic's prompt is its messages list.
    if provider is ANTHROPIC:
        return provider.prompt(body.get("messages") if isinstance(body, dict) else None)
    return provider.prompt(body)
