"""``chat.completion`` bodies and ``chat.completion.chunk`` streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import orjson

from mockai_tw.engine.plan import (
    ChatPlan,
    ChoicePlan,
    Pacing,
    TokenLogprob,
    ToolCallPlan,
    Usage,
)
from mockai_tw.tables import remember
from mockai_tw.wire.envelope import CONTENT_FILTER_RESULTS, Envelope, head
from mockai_tw.wire.sse import DONE


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def logprob_json(entry: TokenLogprob) -> dict[str, Any]:
    return {
        "token": entry.token,
        "logprob": entry.logprob,
        "bytes": list(entry.token.encode()),
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}
            for t in entry.top
        ],
    }


def _logprobs(entries: Any) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {"content": [logprob_json(e) for e in entries], "refusal": None}


def _call_json(call: ToolCallPlan) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _message(choice: ChoicePlan) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.content,
        "refusal": None,
        "annotations": [],
    }
    if choice.tool_calls:
        message["tool_calls"] = [_call_json(c) for c in choice.tool_calls]
    if choice.function_call is not None:
        call = choice.function_call
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    return message


def _choice(plan: ChatPlan, choice: ChoicePlan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": choice.index,
        "message": _message(choice),
        "logprobs": _logprobs(choice.logprobs),
        "finish_reason": choice.finish_reason,
    }
    if plan.content_filter:
        out["content_filter_results"] = CONTENT_FILTER_RESULTS
    return out


def chat_completion(plan: ChatPlan) -> bytes:
    """The whole non-streamed ``chat.completion`` object.

    Its bytes are ``general_completion``'s, spliced: each choice is encoded
    once (a canned choice is shared by every request that plans it alike)
    and only the id, the time and the token counts are encoded per body.
    """
    usage = plan.usage
    if not (
        type(usage.prompt_tokens) is int
        and type(usage.completion_tokens) is int
        and type(plan.created) is int
    ):
        # ``%d`` would write a bool or a float as orjson does not.
        return general_completion(plan)
    content_filter = plan.content_filter
    parts = []
    for choice in plan.choices:
        memo = choice.rendered
        part = memo.get(content_filter)
        if part is None:
            part = memo[content_filter] = orjson.dumps(_choice(plan, choice))
        parts.append(part)
    key = (content_filter, plan.model, plan.service_tier, plan.system_fingerprint)
    around = _AROUND.get(key)
    if around is None:
        around = _around(plan, key, parts)
    if not around:
        return general_completion(plan)
    return _spliced(around, plan, parts)


# A completion body's bytes around what varies, per (content_filter, model,
# service_tier, system_fingerprint), for ``%`` with the id, created, the
# choices and the usage's three counts (b"": the general body, always).
_AROUND: dict[tuple[bool, str, str, str], bytes] = {}
_AROUNDS = 256


def _spliced(around: bytes, plan: ChatPlan, parts: list[bytes]) -> bytes:
    usage = plan.usage
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    return around % (
        orjson.dumps(plan.id),
        plan.created,
        b",".join(parts),
        prompt,
        completion,
        prompt + completion,
    )


def _around(
    plan: ChatPlan, key: tuple[bool, str, str, str], parts: list[bytes]
) -> bytes:
    """``chat_completion``'s template for ``plan``'s constant fields, made
    from the general body with markers where the variable values go, and
    kept only once it gives ``plan``'s general body."""
    body = general_completion(
        dataclasses.replace(plan, id="\x00", created=0, choices=(), usage=Usage(0, 0))
    )
    # orjson renders the markers as these bytes; a JSON string holds no
    # unescaped quote, so each is found once, as a key.
    body = body.replace(b"%", b"%%")
    body = body.replace(b'"id":"\\u0000"', b'"id":%b', 1)
    body = body.replace(b'"created":0,', b'"created":%d,', 1)
    body = body.replace(b'"choices":[]', b'"choices":[%b]', 1)
    body = body.replace(
        b'"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,',
        b'"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,',
        1,
    )
    try:
        same = _spliced(body, plan, parts) == general_completion(plan)
    except (TypeError, ValueError):
        same = False
    return remember(_AROUND, key, body if same else b"", _AROUNDS)


def general_completion(plan: ChatPlan) -> bytes:
    """``chat_completion`` the long way: one dict, encoded whole."""
    return orjson.dumps(
        {
            "id": plan.id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [_choice(plan, c) for c in plan.choices],
            "usage": usage_json(plan.usage),
            "service_tier": plan.service_tier,
            "system_fingerprint": plan.system_fingerprint,
        }
    )


def _fields(plan: ChatPlan) -> dict[str, Any]:
    """What every chunk of the stream repeats before its choices."""
    return {
        "id": plan.id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "service_tier": plan.service_tier,
        "system_fingerprint": plan.system_fingerprint,
    }


def content_opening(index: int) -> bytes:
    """A content chunk's first choice up to its piece."""
    return b'{"index":%d,"delta":{"content":' % index


class _ChunkRenderer(Envelope):
    """Renders chunks of one chat stream (``fields`` None: without the head,
    for the bytes every stream shares)."""

    def __init__(
        self, fields: dict[str, Any] | None, include_usage: bool, content_filter: bool
    ) -> None:
        super().__init__(fields, include_usage, content_filter)
        # Content chunks are most of a stream: their bytes around the piece
        # are encoded once per stream, not once per chunk.
        after = b'},"logprobs":null,"finish_reason":null'
        if self.filter is not None:
            after += b',"content_filter_results":' + orjson.dumps(self.filter)
        self.content_tail = after + b"}" + self.tail + b"\n\n"
        self.content_heads: dict[int, bytes] = {}

    def content(self, index: int, piece: str) -> bytes:
        """``data: {... "delta": {"content": piece} ...}``, from templates."""
        opening = self.content_heads.get(index)
        if opening is None:
            opening = b"data: " + self.head + content_opening(index)
            self.content_heads[index] = opening
        return opening + orjson.dumps(piece) + self.content_tail

    def choice(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        return self.event(
            {
                "index": index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        )


Delta = tuple[dict[str, Any], dict[str, Any] | None]
ROLE_DELTA: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}


def _deltas(choice: ChoicePlan) -> tuple[dict[str, Any], list[Delta]]:
    """The first delta of a choice (it carries the role) and the steps after it."""
    if choice.tool_calls:
        steps: list[Delta] = []
        first: dict[str, Any] = {}
        for i, call in enumerate(choice.tool_calls):
            opening = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            if i == 0:
                first = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [opening],
                    "refusal": None,
                }
            else:
                steps.append(({"tool_calls": [opening]}, None))
            steps.extend(
                ({"tool_calls": [{"index": i, "function": {"arguments": f}}]}, None)
                for f in call.fragments
            )
        return first, steps
    if choice.function_call is not None:
        call = choice.function_call
        first = {
            "role": "assistant",
            "content": None,
            "function_call": {"name": call.name, "arguments": ""},
            "refusal": None,
        }
        return first, [
            ({"function_call": {"arguments": f}}, None) for f in call.fragments
        ]
    first = dict(ROLE_DELTA)
    logprobs = choice.logprobs
    return first, [
        (
            {"content": piece},
            None
            if logprobs is None
            else {"content": [logprob_json(logprobs[i])], "refusal": None},
        )
        for i, piece in enumerate(choice.pieces)
    ]


def _stepper(
    render: _ChunkRenderer, choice: ChoicePlan
) -> tuple[bytes, int, Callable[[int], bytes]]:
    """A choice's first chunk, how many follow, and how to render step ``i``."""
    index = choice.index
    if _plain(choice):
        pieces = choice.pieces
        return (
            render.choice(index, dict(ROLE_DELTA)),
            len(pieces),
            (lambda i: render.content(index, pieces[i])),
        )
    first, steps = _deltas(choice)
    return (
        render.choice(index, first),
        len(steps),
        (lambda i: render.choice(index, steps[i][0], None, steps[i][1])),
    )


# A one-choice text stream's bytes after each chunk's head, shared by every
# stream alike: role chunk, a content chunk's bytes before and after its
# piece, finish chunk.
Template = tuple[bytes, bytes, bytes, bytes]


@lru_cache(maxsize=256)
def _template(
    index: int, include_usage: bool, content_filter: bool, finish_reason: str
) -> Template:
    render = _ChunkRenderer(None, include_usage, content_filter)
    # Rendered without a head, each is b"data: " + what follows the head.
    role = render.choice(index, dict(ROLE_DELTA))[6:]
    opening = content_opening(index)
    finish = render.choice(index, {}, finish_reason)[6:]
    return role, opening, render.content_tail, finish


def general_prefix(plan: ChatPlan) -> bytes:
    """A chunk's bytes up to its first choice, the long way: one dict, encoded."""
    return b"data: " + head(_fields(plan))


# A text stream's chunk prefix around its id and created, per (model,
# service_tier, system_fingerprint), for ``%`` (b"": the general prefix, always).
_PREFIXES: dict[tuple[str, str, str], bytes] = {}
_MAX_PREFIXES = 256
# What ``%d`` writes as orjson writes it: an int in orjson's range.
_INT_RANGE = range(-(2**63), 2**64)


def stream_prefix(plan: ChatPlan) -> bytes:
    """``general_prefix``, spliced: only the id and the time are encoded
    per stream, around bytes kept for every stream of the model alike."""
    model, tier, fingerprint = plan.model, plan.service_tier, plan.system_fingerprint
    created = plan.created
    if (
        type(plan.id) is str
        and type(created) is int
        and created in _INT_RANGE
        and type(model) is str
        and type(tier) is str
        and type(fingerprint) is str
    ):
        key = (model, tier, fingerprint)
        around = _PREFIXES.get(key)
        if around is None:
            around = _prefix_around(plan, key)
        if around:
            return around % (orjson.dumps(plan.id), created)
    return general_prefix(plan)


def _prefix_around(plan: ChatPlan, key: tuple[str, str, str]) -> bytes:
    """``stream_prefix``'s template for ``plan``'s constant fields, made from
    the general prefix with markers where the id and the time go, and kept
    only once it gives ``plan``'s general prefix."""
    fields = _fields(plan)
    fields["id"] = "\x00"
    fields["created"] = 0
    # A JSON string holds no unescaped quote: each marker is found once, as
    # its key's value.
    around = (b"data: " + head(fields)).replace(b"%", b"%%")
    around = around.replace(b'"id":"\\u0000"', b'"id":%b', 1)
    around = around.replace(b'"created":0,', b'"created":%d,', 1)
    try:
        same = around % (orjson.dumps(plan.id), plan.created) == general_prefix(plan)
    except (TypeError, ValueError):
        same = False
    return remember(_PREFIXES, key, around if same else b"", _MAX_PREFIXES)


# A text stream's head (its prefix and a content chunk's opening) around its
# id and created, and its template, per (model, service_tier,
# system_fingerprint, index, include_usage, content_filter, finish_reason)
# (b"": ``stream_prefix``'s way, always).  Off: that way for every stream
# (the tests compare).
_HEADS: dict[tuple[Any, ...], tuple[bytes, Template]] = {}
fast_heads = True


def _head_around(plan: ChatPlan, key: tuple[Any, ...]) -> tuple[bytes, Template]:
    """``TextStream``'s head template: ``stream_prefix``'s, which it checked
    against the general prefix, and the opening after it."""
    model_key = (key[0], key[1], key[2])
    around = _PREFIXES.get(model_key)
    if around is None:
        around = _prefix_around(plan, model_key)
    template = _template(key[3], key[4], key[5], key[6])
    head = around + template[1].replace(b"%", b"%%") if around else b""
    return remember(_HEADS, key, (head, template), _MAX_PREFIXES)


class TextStream:
    """A one-choice text stream: an index over the plan's pieces.

    Its set-up is one head per stream (id, created, model); every other byte
    comes from a template shared by all streams, and an event is rendered
    only when delivery asks for it, so an open stream holds no rendered
    chunks, no generator frame and no per-choice closures.
    """

    __slots__ = (
        "_at",
        "_count",
        "_cut",
        "_first_s",
        "_head",
        "_interval_s",
        "_pacing",
        "_pieces",
        "_template",
        "_usage",
    )

    def __init__(self, plan: ChatPlan, choice: ChoicePlan) -> None:
        # The head kept as a content chunk's bytes before its piece (most
        # chunks are content): the few other events cut the prefix from it.
        # Spliced, prefix and opening at once, from bytes kept per model and
        # choice (``_HEADS``), for the values ``stream_prefix`` splices.
        created = plan.created
        model, tier, fingerprint = (
            plan.model,
            plan.service_tier,
            plan.system_fingerprint,
        )
        kept = None
        if (
            fast_heads
            and type(plan.id) is str
            and type(created) is int
            and created in _INT_RANGE
            and type(model) is str
            and type(tier) is str
            and type(fingerprint) is str
        ):
            key = (
                model,
                tier,
                fingerprint,
                choice.index,
                plan.include_usage,
                plan.content_filter,
                choice.finish_reason,
            )
            kept = _HEADS.get(key)
            if kept is None:
                kept = _head_around(plan, key)
        if kept is not None and kept[0]:
            around, template = kept
            head = around % (orjson.dumps(plan.id), created)
            self._template = template
            self._head = head
            self._cut = len(head) - len(template[1])
        else:
            prefix = stream_prefix(plan)
            self._template = _template(
                choice.index,
                plan.include_usage,
                plan.content_filter,
                choice.finish_reason,
            )
            self._head = prefix + self._template[1]
            self._cut = len(prefix)
        self._pieces = choice.pieces
        self._count = len(choice.pieces)
        pacing = self._pacing = plan.pacing
        # Fixed gaps: ``take_due``'s steady step computes a due time as
        # ``Pacing.due`` does, inline (None: drawn gaps, the general way).
        steady = type(pacing) is Pacing and not pacing.offsets
        self._first_s = pacing.first_s
        self._interval_s: float | None = pacing.interval_s if steady else None
        self._usage: Usage | None = plan.usage if plan.include_usage else None
        self._at = 0

    def __iter__(self) -> TextStream:
        return self

    def _due(self, at: int) -> float | None:
        """When event ``at`` is due (None: there is none)."""
        count = self._count
        if at == 0:
            return self._pacing.due(0)
        if at <= count:
            return self._pacing.due(at - 1)
        # The finish chunk, the usage chunk if asked for, then [DONE].
        if at <= count + 2 + (self._usage is not None):
            return self._pacing.due(max(count - 1, 0))
        return None

    def _render(self, at: int) -> bytes:
        """Event ``at``'s bytes (one ``_due`` says there is)."""
        count = self._count
        if 0 < at <= count:
            piece = orjson.dumps(self._pieces[at - 1])
            return self._head + piece + self._template[2]
        prefix = self._head[: self._cut]
        if at == 0:
            return prefix + self._template[0]
        after = at - count
        if after == 1:
            return prefix + self._template[3]
        if after == 2 and self._usage is not None:
            usage = orjson.dumps(usage_json(self._usage))
            return prefix + b'],"usage":' + usage + b"}\n\n"
        return DONE

    def due_next(self) -> float | None:
        """When the next event is due (None: there is none), unrendered:
        delivery renders an event only once it is due, so an idle stream
        holds no chunk."""
        return self._due(self._at)

    def take_due(
        self, start: float, now: float, out: list[bytes], limit: int
    ) -> float | None:
        """Render onto ``out`` each next event due by ``now`` (``start +
        due <= now``, the comparison delivery makes) while fewer than
        ``limit`` bytes are taken; return when the next event is due (None:
        there is none).  Delivery's one call per write, for two per event
        (``due_next``, ``next``).

        The steady step first: a content piece due, the next piece not yet
        (fixed gaps), which is nearly every call of a running stream; then
        content pieces due together (``_take_pieces``); anything else takes
        the general loop (``_take_due``)."""
        at = self._at
        interval = self._interval_s
        count = self._count
        if interval is not None and 0 < at <= count and limit > 0:
            # Event ``at`` is piece ``at - 1``, event ``at + 1`` piece ``at``:
            # ``Pacing.due(at - 1)`` and ``Pacing.due(at)``, inline.
            first = self._first_s
            if start + (first + (at - 1) * interval) <= now:
                due = first + at * interval
                if at < count and start + due > now:
                    # Past it before it renders, as the general loop.
                    self._at = at + 1
                    piece = orjson.dumps(self._pieces[at - 1])
                    out.append(self._head + piece + self._template[2])
                    return due
                return self._take_pieces(start, now, out, limit, interval)
        return self._take_due(start, now, out, limit)

    def _take_pieces(
        self, start: float, now: float, out: list[bytes], limit: int, interval: float
    ) -> float | None:
        """``take_due`` for a stream owed more than one content piece, or its
        last (event ``self._at`` is a piece, due): the pieces rendered in a
        loop of their own, what follows the last the general way.

        A tick that comes a whole interval late (a server near capacity)
        finds a share of its streams owing two pieces; the general loop makes
        three calls an event, and a write of two pieces cost 15% more so
        (benchmarks/README.md, ninth round)."""
        at = self._at
        count = self._count
        first = self._first_s
        head, tail, pieces = self._head, self._template[2], self._pieces
        size = 0
        while True:
            self._at = at + 1
            data = head + orjson.dumps(pieces[at - 1]) + tail
            out.append(data)
            size += len(data)
            at += 1
            if at > count:
                # The finish chunk and after, within what is left of ``limit``.
                return self._take_due(start, now, out, limit - size)
            due = first + (at - 1) * interval
            if start + due > now or size >= limit:
                return due

    def _take_due(
        self, start: float, now: float, out: list[bytes], limit: int
    ) -> float | None:
        """``take_due`` the general way: event by event."""
        size = 0
        at = self._at
        due = self._due(at)
        while due is not None and start + due <= now and size < limit:
            # Past it before it renders, as ``__next__``: an event that
            # fails to render is not tried again.
            self._at = at + 1
            data = self._render(at)
            out.append(data)
            size += len(data)
            at += 1
            due = self._due(at)
        return due

    def __next__(self) -> tuple[float, bytes]:
        at = self._at
        due = self._due(at)
        if due is None:
            raise StopIteration
        self._at = at + 1
        return due, self._render(at)


def _plain(choice: ChoicePlan) -> bool:
    """Text only: no tool calls, no legacy function call, no logprobs."""
    return (
        not choice.tool_calls and choice.function_call is None and not choice.logprobs
    )


def chat_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    """Each SSE event of the stream with the time (from start) it is due.

    Choices interleave step by step, as OpenAI interleaves ``n > 1``.
    """
    if len(plan.choices) == 1 and _plain(plan.choices[0]):
        return TextStream(plan, plan.choices[0])
    return _chat_stream(plan)


def _chat_stream(plan: ChatPlan) -> Iterator[tuple[float, bytes]]:
    render = _ChunkRenderer(_fields(plan), plan.include_usage, plan.content_filter)
    pacing = plan.pacing
    start = pacing.due(0)
    steppers = [_stepper(render, choice) for choice in plan.choices]
    for first, _, _ in steppers:
        yield start, first
    steps = max((count for _, count, _ in steppers), default=0)
    for step in range(steps):
        due = pacing.due(step)
        for _, count, render_step in steppers:
            if step < count:
                yield due, render_step(step)
    end = pacing.due(max(steps - 1, 0))
    for choice in plan.choices:
        yield end, render.choice(choice.index, {}, choice.finish_reason)
    if plan.include_usage:
        yield end, render.usage_event(usage_json(plan.usage))
    yield end, DONE
