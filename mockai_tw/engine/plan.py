"""The reply plan: the engine's answer as a plain value.

The wire format renders it and delivery paces it; neither decides anything.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

# Delivery's actions live with the fault kinds that use them (a leaf).
from mockai_tw.fault_kinds import CLOSE as CLOSE
from mockai_tw.fault_kinds import RESET as RESET
from mockai_tw.fault_kinds import Action as Action

if TYPE_CHECKING:
    # Only named in annotations: the plan echoes a few request fields.
    from mockai_tw.request.responses import InputItem, ResponsesRequest


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    # Of ``completion_tokens``, those spent reasoning (a provider's thinking).
    reasoning_tokens: int = 0
    # Of ``prompt_tokens``, those read from a prompt cache, and those written
    # to it to live five minutes or an hour (Anthropic's cache_control).
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    # The most likely tokens at this position, most likely first.
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class ToolCallPlan:
    id: str
    name: str
    # The whole JSON arguments, and the fragments a stream sends them in.
    arguments: str
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class ChoicePlan:
    index: int
    # The reply cut into the pieces a stream sends, one chunk each.
    pieces: tuple[str, ...]
    finish_reason: str
    # One entry per piece when the request asked for logprobs.
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[ToolCallPlan, ...] = ()
    # The legacy ``functions`` answer.
    function_call: ToolCallPlan | None = None
    # The request's stop sequence that ended the text, if one did.
    stop_sequence: str | None = None
    # The reasoning (a provider's "thinking") before the answer, in stream
    # pieces, each paced like a text piece; () when none was asked for.
    reasoning: tuple[str, ...] = ()

    @cached_property
    def text(self) -> str:
        # Read by the body, the journal and the tokenizer; a canned choice
        # is shared by many requests, so it is joined once.
        return "".join(self.pieces)

    @cached_property
    def rendered(self) -> dict[Any, bytes]:
        # What a wire renderer made of this choice, by the renderer's own
        # key: a canned choice is shared by many requests, so rendered once.
        return {}

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def steps(self) -> int:
        """How many paced chunks follow the first one of this choice."""
        thought = len(self.reasoning)
        if self.tool_calls:
            return (
                thought
                + len(self.tool_calls)
                - 1
                + sum(len(c.fragments) for c in self.tool_calls)
            )
        if self.function_call is not None:
            return thought + len(self.function_call.fragments)
        return thought + len(self.pieces)

    @property
    def content(self) -> str | None:
        """``message.content``: null when the answer is a call."""
        if self.tool_calls or self.function_call is not None:
            return None
        return self.text


@dataclass(frozen=True)
class Pacing:
    """When each streamed piece is due, counted from the start of the reply.

    Fixed gaps are ``interval_s``; drawn gaps are kept as cumulative offsets.
    """

    first_s: float = 0.0
    interval_s: float = 0.0
    offsets: tuple[float, ...] = ()

    @classmethod
    def from_gaps(cls, first_s: float, gaps: Sequence[float]) -> Pacing:
        return cls(first_s, 0.0, tuple(itertools.accumulate(gaps, initial=0.0)))

    def due(self, step: int) -> float:
        if self.offsets:
            return self.first_s + self.offsets[min(step, len(self.offsets) - 1)]
        return self.first_s + step * self.interval_s


@dataclass(frozen=True)
class ChatPlan:
    id: str
    created: int
    model: str
    system_fingerprint: str
    choices: tuple[ChoicePlan, ...]
    usage: Usage
    stream: bool = False
    include_usage: bool = False
    # Azure-style ``content_filter_results`` on every choice.
    content_filter: bool = False
    pacing: Pacing = Pacing()
    service_tier: str = "default"
    # How long a non-streamed reply waits before it is sent.
    delay_s: float = 0.0
    # The scenario rule that answered (None: the default answer).
    rule: str | None = None
    # Whether the choices' reasoning text is sent (Gemini without
    # ``includeThoughts`` only counts it).
    reasoning_shown: bool = True


# --- legacy completions ---------------------------------------------------------


@dataclass(frozen=True)
class CompletionChoice:
    index: int
    # The returned text (echoed prompt included) cut into stream pieces.
    pieces: tuple[str, ...]
    finish_reason: str
    # With ``logprobs``: one entry per piece (the pieces are then tokens).
    logprobs: tuple[TokenLogprob, ...] | None = None
    # Where the returned text starts in prompt + completion (``text_offset``).
    offset: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class CompletionPlan:
    id: str
    created: int
    model: str
    system_fingerprint: str
    choices: tuple[CompletionChoice, ...]
    usage: Usage
    pacing: Pacing
    # How long a non-streamed reply waits before it is sent.
    delay_s: float = 0.0
    # How many prompts the request held (Azure reports a filter result per prompt).
    prompts: int = 1
    stream: bool = False
    include_usage: bool = False
    # Azure-style ``content_filter_results`` on every choice.
    content_filter: bool = False
    # The scenario rule that answered (None: the default answer).
    rule: str | None = None


# --- the Responses API --------------------------------------------------------


@dataclass(frozen=True)
class MessageOutput:
    """An assistant ``message`` output item: its text in stream pieces."""

    id: str
    pieces: tuple[str, ...]
    status: str = "completed"
    # One entry per piece with ``include: ["message.output_text.logprobs"]``.
    logprobs: tuple[TokenLogprob, ...] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class CallOutput:
    """A ``function_call`` output item (``call.id`` is its ``call_id``)."""

    id: str
    call: ToolCallPlan
    status: str = "completed"


OutputItem = MessageOutput | CallOutput


@dataclass(frozen=True)
class ListedItem:
    """An input item as ``input_items`` lists it, with the id it was given."""

    id: str
    item: InputItem


@dataclass(frozen=True)
class ResponsePlan:
    id: str
    created_at: int
    request: ResponsesRequest
    output: tuple[OutputItem, ...]
    usage: Usage
    pacing: Pacing
    # When the answer is (or was) all out: the last piece of a stream, or
    # the delay of a plain answer.
    completed_at: int
    # "completed" or "incomplete" (then ``incomplete_reason`` says why).
    status: str = "completed"
    incomplete_reason: str | None = None
    # How long a non-streamed reply waits before it is sent.
    delay_s: float = 0.0
    input_items: tuple[ListedItem, ...] = ()
    # Input and output of this response and every one it follows, as chat
    # messages, without instructions (OpenAI does not carry those over a
    # chain): what a response that follows this one continues.
    context: tuple[dict[str, Any], ...] = ()
    # The scenario rule that answered (None: the default answer).
    rule: str | None = None

    @property
    def model(self) -> str:
        return self.request.model


# --- token counting -------------------------------------------------------------


@dataclass(frozen=True)
class TokenCount:
    """A prompt's tokens, counted as the reply's ``usage`` counts them."""

    model: str
    # Named as the embeddings plan names it: the journal and metrics read it.
    prompt_tokens: int


# --- embeddings, moderations, models -------------------------------------------


@dataclass(frozen=True)
class EmbeddingsPlan:
    model: str
    vectors: tuple[array[float], ...]
    prompt_tokens: int
    encoding_format: str = "float"


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: Mapping[str, bool]
    category_scores: Mapping[str, float]
    applied_input_types: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class ModerationPlan:
    id: str
    model: str
    results: tuple[ModerationResult, ...]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int
    owned_by: str
