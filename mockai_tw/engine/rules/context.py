"""The request as rules see it: one small provider-neutral value per request.

Built from any endpoint's request model; conditions test it and templates
read from it.  Knows nothing of rules, HTTP or the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mockai_tw.request.chat import ChatRequest, FunctionDef
from mockai_tw.request.completions import CompletionRequest, Prompt

#: Every endpoint a rule can name, and the paths that mean the same.
ENDPOINTS = (
    "chat",
    "completions",
    "responses",
    "messages",
    "gemini",
    "embeddings",
    "moderations",
)
#: Endpoints that answer with text: the default for rules that do.
TEXT_ENDPOINTS = ("chat", "completions", "responses", "messages", "gemini")
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RequestContext:
    """What a rule can look at: one small value per request, any endpoint.

    ``headers`` has lower-cased names; ``messages`` are (role, text) pairs in
    order (a legacy prompt or an embeddings input is one ``user`` message).
    """

    endpoint: str
    model: str
    messages: tuple[tuple[str, str], ...] = ()
    tools: tuple[FunctionDef, ...] = ()
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
    user: str | None = None
    metadata: Mapping[str, Any] | None = None
    seed: int | None = None
    # The request's JSON Schema for the answer (``response_format``), if any.
    response_schema: Mapping[str, Any] | None = None
    response_name: str = ""
    # A line of a batch (``/v1/batches``) rather than a live request.
    batch: bool = False

    @property
    def last_user_text(self) -> str:
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""

    @property
    def system_text(self) -> str:
        return "\n".join(t for r, t in self.messages if r in ("system", "developer"))

    @property
    def last_message(self) -> str:
        return self.messages[-1][1] if self.messages else ""

    @property
    def last_role(self) -> str:
        return self.messages[-1][0] if self.messages else ""

    def function(self, name: str) -> FunctionDef:
        """The offered function called ``name`` (a bare one when not offered)."""
        for function in self.tools:
            if function.name == name:
                return function
        return FunctionDef(name=name)


def as_text(value: Any) -> str:
    """A metadata value as conditions and templates see it (JSON if not text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def chat_context(
    request: ChatRequest,
    headers: Mapping[str, str] = NO_HEADERS,
    endpoint: str = "chat",
) -> RequestContext:
    fmt = request.response_format
    return RequestContext(
        endpoint=endpoint,
        model=request.model,
        messages=tuple((m.role, m.text) for m in request.messages),
        tools=request.tools + request.functions,
        stream=request.stream,
        headers=headers,
        user=request.user,
        metadata=request.metadata,
        seed=request.seed,
        response_schema=fmt.schema if fmt.type == "json_schema" else None,
        response_name=fmt.name or "",
    )


def prompt_context(
    request: CompletionRequest, prompt: Prompt, headers: Mapping[str, str] = NO_HEADERS
) -> RequestContext:
    """A legacy completion's prompt is its one user message."""
    return RequestContext(
        endpoint="completions",
        model=request.model,
        messages=(("user", prompt.text),),
        stream=request.stream,
        headers=headers,
        user=request.user,
        seed=request.seed,
    )


def input_context(
    endpoint: str,
    model: str,
    texts: Sequence[str],
    headers: Mapping[str, str] = NO_HEADERS,
    user: str | None = None,
) -> RequestContext:
    """Embeddings and moderations: each input text is a user message."""
    return RequestContext(
        endpoint=endpoint,
        model=model,
        messages=tuple(("user", t) for t in texts),
        headers=headers,
        user=user,
    )
