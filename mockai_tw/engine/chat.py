"""Chat completions: what to answer, as a ChatPlan.

Pure: the caller passes the time; randomness comes from the engine's own
``random.Random`` (seeded from the config) or from the request's ``seed``.
A choice is text (canned, or JSON for ``response_format``), tool calls whose
arguments fit the tool's schema, or a legacy ``function_call``.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson

from mockai_tw.config import Config
from mockai_tw.engine import schema_gen, tokenizer
from mockai_tw.engine.chunking import chunk
from mockai_tw.engine.ids import new_id
from mockai_tw.engine.plan import (
    ChatPlan,
    ChoicePlan,
    Pacing,
    TokenLogprob,
    ToolCallPlan,
    TopLogprob,
    Usage,
)
from mockai_tw.engine.rules import (
    NO_HEADERS,
    Claim,
    ErrorAnswer,
    Hit,
    RequestContext,
    RuleBook,
    chat_context,
    render,
    scripted_error,
)
from mockai_tw.engine.rules.answers import Spoken
from mockai_tw.engine.rules.templates import Lookup
from mockai_tw.engine.timing import Override, TimingModel
from mockai_tw.errors import invalid
from mockai_tw.request.chat import ChatRequest, FunctionDef
from mockai_tw.request.features import Thinking
from mockai_tw.tables import remember
from mockai_tw.values import built, defaults, template

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
# Framing tokens of one call in the completion (name, arguments wrapper).
TOKENS_PER_CALL = 3


def apply_limits(
    text: str, stop: Sequence[str], max_tokens: int | None, model: str | None = None
) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence, then at ``max_tokens``."""
    text, finish, _ = limited(text, stop, max_tokens, model)
    return text, finish


def limited(
    text: str, stop: Sequence[str], max_tokens: int | None, model: str | None = None
) -> tuple[str, str, str | None]:
    """``apply_limits``, and the stop sequence that ended the text (None when
    none did, or when ``max_tokens`` cut it shorter still)."""
    finish = "stop"
    found = [(text.find(s), s) for s in stop if s]
    cuts = [(at, s) for at, s in found if at >= 0]
    sequence = None
    if cuts:
        at, sequence = min(cuts, key=lambda cut: cut[0])
        text = text[:at]
    if max_tokens is not None:
        text, cut = tokenizer.for_model(model).truncate(text, max_tokens)
        if cut:
            finish = "length"
            sequence = None
    return text, finish, sequence


def prompt_tokens(request: ChatRequest) -> int:
    """The prompt's tokens, as ``usage.prompt_tokens`` counts them (every
    provider's token counting goes through here)."""
    tools = request.tools
    return tokenizer.count_messages(
        [m.raw for m in request.messages],
        [{"type": "function", "function": t.__dict__} for t in tools] if tools else (),
        request.model,
    )


# Prompt counts of requests seen before, by identity: a plain body read
# before is the same request (request/chat.py), so its count is too. Each
# entry holds its request, so an id is not reused while it is kept.
_COUNTED: dict[int, tuple[ChatRequest, int]] = {}
_MAX_COUNTED = 256


def _counted(request: ChatRequest) -> int:
    known = _COUNTED.get(id(request))
    if known is not None and known[0] is request:
        return known[1]
    count = prompt_tokens(request)
    remember(_COUNTED, id(request), (request, count), _MAX_COUNTED)
    return count


# ``values.adopted``'s two steps (``_plain_chat``).
_NEW = object.__new__
_SET = object.__setattr__

_CHAT_PLAN = defaults(ChatPlan)
_USAGE = defaults(Usage)
# A plain plan's fields and its usage's, its steps, and whether its pacing
# is the same for every request (see ``Engine._plain_chat``).
_PlainPlan = tuple[dict[str, Any], dict[str, Any], int, bool]

# Canned choices kept per engine before the cache starts again.
CANNED_CHOICES = 1024


@lru_cache(maxsize=256)
def _schema_problem(canonical: bytes) -> str | None:
    """Why a schema is unusable, or None; cached because clients resend them."""
    try:
        schema_gen.check_schema(orjson.loads(canonical))
    except schema_gen.SchemaError as error:
        return str(error)
    return None


def check_schema(schema: Any, param: str) -> None:
    """A 400 naming ``param`` unless ``schema`` is a usable JSON Schema."""
    try:
        # orjson stops at 254 levels, far past the schema bound, without
        # recursing in Python: the cache key of any schema that can be usable.
        canonical = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = b""
    try:
        if not canonical:
            schema_gen.check_depth(schema)
            raise schema_gen.SchemaError("the schema cannot be read as JSON")
        problem = _schema_problem(canonical)
    except schema_gen.SchemaError as error:
        problem = str(error)
    if problem is not None:
        raise invalid(f"Invalid schema for '{param}': {problem}", param=param)


def synthetic_logprobs(
    pieces: Sequence[str], rng: random.Random, top: int
) -> tuple[TokenLogprob, ...]:
    """Plausible logprobs: the sent token is the most likely at each position."""
    out = []
    for piece in pieces:
        logprob = -round(rng.expovariate(12.0), 6)
        alternatives: list[TopLogprob] = [TopLogprob(piece, logprob)]
        candidates = [
            piece.strip(),
            piece.lower(),
            piece.upper(),
            " " + piece.strip(),
            piece.strip() + ",",
            " the",
            " a",
            ".",
            ",",
            " and",
            "\n",
            " I",
        ]
        seen = {piece}
        floor = logprob
        for candidate in candidates:
            if len(alternatives) > top - 1 or top == 0:
                break
            if not candidate or candidate in seen:
                continue
            seen.add(candidate)
            floor = round(floor - rng.uniform(0.5, 3.0), 6)
            alternatives.append(TopLogprob(candidate, floor))
        out.append(TokenLogprob(piece, logprob, tuple(alternatives[:top])))
    return tuple(out)


def default_reasoning(request: ChatRequest) -> str:
    """The reasoning shown when no rule scripts one: short, read from the
    prompt, the same for the same prompt."""
    words = request.last_user_text.split()
    asked = " ".join(words[:24]) + (" ..." if len(words) > 24 else "")
    if request.last_role in ("tool", "function"):
        plan = "The tool has answered; I can reply from its result."
    elif request.tools and request.tool_choice != "none":
        plan = "One of the offered tools may help; I will decide whether to call it."
    else:
        plan = "I will answer directly and keep it short."
    if not asked:
        return f"There is no question to weigh. {plan}"
    return f'The user asks: "{asked}". Let me work out what is wanted. {plan}'


class Unmatched:
    """The rules were not asked yet (the engine asks them itself)."""


UNMATCHED = Unmatched()


class Engine:
    """Holds the config and the reply picker's random state."""

    def __init__(
        self,
        config: Config,
        rng: random.Random | None = None,
        rules: RuleBook | None = None,
    ) -> None:
        self.config = config
        self.rng = rng or random.Random(config.seed)
        self.timing = TimingModel(config)
        # The server passes its book so run-time rules outlive a reload.
        self.rules = rules if rules is not None else RuleBook(config.rules)
        # A canned reply's choice depends only on this config and the
        # request's limits: planned once per such key (a reload makes a new
        # engine, so a new cache).
        self._canned: dict[tuple[Any, ...], tuple[ChoicePlan, int]] = {}
        # A plain request's plan, but for its id, time, prompt tokens and
        # stream flags, per canned reply, limits, model and timing asked.
        self._plain: dict[tuple[Any, ...], _PlainPlan] = {}

    def match(
        self, context: RequestContext, now: float, claim: Claim | None = None
    ) -> Hit | None:
        """The rule that answers this request, or None for the default answer.

        With a ``claim`` no counter moves until the caller commits it, so a
        request refused after matching (rate limit, fault) consumes nothing.
        """
        if not self.rules:
            return None
        return self.rules.match(context, now, claim)

    def scripted(self, context: RequestContext, now: float) -> Hit | None:
        """Match and commit at once; an ``error`` answer raises its ApiError."""
        hit = self.match(context, now)
        if hit is not None and isinstance(hit.answer, ErrorAnswer):
            raise scripted_error(hit)
        return hit

    def scripted_timing(
        self, hit: Hit | None, timing: Override | None
    ) -> Override | None:
        """A rule's own pacing, under any the request's headers asked for."""
        if hit is None or (hit.ttft_ms is None and hit.interval_ms is None):
            return timing
        asked = timing or Override()
        return Override(
            asked.ttft_ms if asked.ttft_ms is not None else hit.ttft_ms,
            asked.itl_ms if asked.itl_ms is not None else hit.interval_ms,
        )

    def picker(self, seed: int | None, *key: str) -> random.Random:
        """The engine's random state, or one derived from a request's ``seed``.

        With a seed, the same seed and key (model, prompt...) give the same
        picks on every endpoint.
        """
        if seed is None:
            return self.rng
        return random.Random("\0".join((str(seed), *key)))

    def reply_text(self, rng: random.Random) -> str:
        """The text of one reply: a pick from the configured ``replies``."""
        return rng.choice(self.config.replies)

    def arguments(self, function: FunctionDef, rng: random.Random) -> str:
        """JSON arguments valid against the function's ``parameters``."""
        schema = function.parameters or _EMPTY_PARAMETERS
        try:
            value = schema_gen.generate(schema, rng, name=function.name)
        except schema_gen.SchemaError as error:
            raise invalid(
                f"Invalid schema for function '{function.name}': {error}",
                param="tools",
            ) from None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def structured_text(self, request: ChatRequest, rng: random.Random) -> str:
        """The reply under ``response_format``: text, a JSON object, or schema JSON."""
        fmt = request.response_format
        if fmt.type == "json_object":
            return json.dumps({"message": self.reply_text(rng)}, ensure_ascii=False)
        if fmt.type == "json_schema":
            try:
                value = schema_gen.generate(fmt.schema or {}, rng, name=fmt.name or "")
            except schema_gen.SchemaError as error:
                raise invalid(
                    f"Invalid schema for response_format '{fmt.name}': {error}",
                    param="response_format",
                ) from None
            return json.dumps(value, ensure_ascii=False)
        return self.reply_text(rng)

    def _calls(
        self,
        mode: str,
        forced: str | None,
        offered: tuple[FunctionDef, ...],
        request: ChatRequest,
        rng: random.Random,
        parallel: bool,
    ) -> list[FunctionDef]:
        """Which functions this choice calls (none means a text answer)."""
        if mode == "none" or not offered:
            return []
        if forced is not None:
            return [f for f in offered if f.name == forced]
        if mode == "auto":
            if request.last_role in ("tool", "function"):
                return []
            if rng.random() >= self.config.tools.auto_probability:
                return []
        if not parallel or len(offered) == 1:
            return [rng.choice(offered)]
        most = min(len(offered), self.config.tools.max_parallel)
        return rng.sample(list(offered), rng.randint(1, most))

    def _call(
        self, function: FunctionDef, rng: random.Random, model: str
    ) -> ToolCallPlan:
        arguments = self.arguments(function, rng)
        return ToolCallPlan(
            id=new_id("call_", 24),
            name=function.name,
            arguments=arguments,
            fragments=tuple(tokenizer.pieces(arguments, model)),
        )

    def _scripted_choice(
        self, request: ChatRequest, index: int, rng: random.Random, hit: Hit
    ) -> tuple[ChoicePlan, int]:
        """A choice as the matched rule says: its text, or its tool calls."""
        model = request.model
        reply = render(hit, rng, self, index, request.n)
        if reply.tool_calls:
            calls = tuple(
                ToolCallPlan(
                    id=new_id("call_", 24),
                    name=name,
                    arguments=arguments,
                    fragments=tuple(tokenizer.pieces(arguments, model)),
                )
                for name, arguments in reply.tool_calls
            )
            tokens = [
                TOKENS_PER_CALL
                + tokenizer.count(c.name, model)
                + tokenizer.count(c.arguments, model)
                for c in calls
            ]
            if request.functions and not request.tools:
                plan = ChoicePlan(index, (), "function_call", function_call=calls[0])
                return plan, tokens[0]
            return ChoicePlan(index, (), "tool_calls", tool_calls=calls), sum(tokens)
        text, finish, sequence = limited(
            reply.text, request.stop, request.max_tokens, model
        )
        mode = (
            "token" if request.logprobs else hit.chunking or self.config.stream.chunking
        )
        pieces = chunk(text, mode, model)
        logprobs = None
        if request.logprobs:
            logprobs = synthetic_logprobs(pieces, rng, request.top_logprobs or 0)
        plan = ChoicePlan(
            index, pieces, finish, logprobs=logprobs, stop_sequence=sequence
        )
        return plan, tokenizer.count(text, model)

    def _choice(
        self,
        request: ChatRequest,
        index: int,
        rng: random.Random,
        hit: Hit | None = None,
    ) -> tuple[ChoicePlan, int]:
        if hit is not None:
            return self._scripted_choice(request, index, rng, hit)
        model = request.model
        tools = self._calls(
            request.tool_choice,
            request.forced_tool,
            request.tools,
            request,
            rng,
            request.parallel_tool_calls,
        )
        if tools:
            calls = tuple(self._call(f, rng, model) for f in tools)
            tokens = sum(
                TOKENS_PER_CALL
                + tokenizer.count(c.name, model)
                + tokenizer.count(c.arguments, model)
                for c in calls
            )
            return ChoicePlan(index, (), "tool_calls", tool_calls=calls), tokens
        legacy = self._calls(
            request.function_call,
            request.forced_function,
            request.functions,
            request,
            rng,
            parallel=False,
        )
        if legacy:
            call = self._call(legacy[0], rng, model)
            tokens = (
                TOKENS_PER_CALL
                + tokenizer.count(call.name, model)
                + tokenizer.count(call.arguments, model)
            )
            return ChoicePlan(index, (), "function_call", function_call=call), tokens
        if request.response_format.type == "text" and not request.logprobs:
            return self._canned_choice(request, index, self.reply_text(rng))
        text = self.structured_text(request, rng)
        text, finish, sequence = limited(text, request.stop, request.max_tokens, model)
        mode = "token" if request.logprobs else self.config.stream.chunking
        pieces = chunk(text, mode, model)
        logprobs = None
        if request.logprobs:
            logprobs = synthetic_logprobs(pieces, rng, request.top_logprobs or 0)
        plan = ChoicePlan(
            index, pieces, finish, logprobs=logprobs, stop_sequence=sequence
        )
        return plan, tokenizer.count(text, model)

    def _canned_choice(
        self, request: ChatRequest, index: int, reply: str
    ) -> tuple[ChoicePlan, int]:
        """A plain text choice of ``reply``: plans are values, so one is
        shared by every request that would plan it alike."""
        model = request.model
        key = (reply, request.stop, request.max_tokens, model, index)
        known = self._canned.get(key)
        if known is not None:
            return known
        text, finish, sequence = limited(reply, request.stop, request.max_tokens, model)
        pieces = chunk(text, self.config.stream.chunking, model)
        plan = ChoicePlan(index, pieces, finish, stop_sequence=sequence)
        return remember(
            self._canned, key, (plan, tokenizer.count(text, model)), CANNED_CHOICES
        )

    def reasoning(
        self, request: ChatRequest, thinking: Thinking, hit: Hit | None
    ) -> tuple[tuple[str, ...], int]:
        """The reasoning's stream pieces and tokens: the rule's ``thinking``
        or the default, within the budget and leaving the answer a token."""
        model = request.model
        text = default_reasoning(request)
        answer = hit.answer if hit is not None else None
        if isinstance(answer, Spoken) and answer.thinking is not None:
            assert hit is not None
            text = answer.thinking.render(Lookup(hit.context, hit.captures, hit.count))
        bounds = [] if thinking.budget is None else [thinking.budget]
        if request.max_tokens is not None:
            bounds.append(max(0, request.max_tokens - 1))
        if bounds:
            text, _cut = tokenizer.for_model(model).truncate(text, min(bounds))
        chunking = hit.chunking if hit is not None else None
        mode = chunking or self.config.stream.chunking
        return chunk(text, mode, model), tokenizer.count(text, model)

    def check(self, request: ChatRequest) -> None:
        """Reject unusable schemas before answering, naming where they are."""
        if (
            not request.tools
            and not request.functions
            and request.response_format.type != "json_schema"
        ):
            return
        for i, tool in enumerate(request.tools):
            if tool.parameters is not None:
                check_schema(tool.parameters, f"tools[{i}].function.parameters")
        for i, function in enumerate(request.functions):
            if function.parameters is not None:
                check_schema(function.parameters, f"functions[{i}].parameters")
        if request.response_format.type == "json_schema":
            check_schema(
                request.response_format.schema, "response_format.json_schema.schema"
            )

    def chat(
        self,
        request: ChatRequest,
        now: float,
        timing: Override | None = None,
        headers: Mapping[str, str] = NO_HEADERS,
        endpoint: str = "chat",
        hit: Hit | Unmatched | None = UNMATCHED,
        thinking: Thinking | None = None,
    ) -> ChatPlan:
        """``headers`` (lower-cased names) and ``endpoint`` are for the rules.

        The pipeline passes the ``hit`` it matched (and checked) already;
        called without one, the engine checks and matches itself.  With
        ``thinking`` each choice reasons first, and its reasoning tokens
        count against ``max_tokens`` as the answer's do.
        """
        if isinstance(hit, Unmatched):
            self.check(request)
            hit = None
            if self.rules:
                hit = self.scripted(chat_context(request, headers, endpoint), now)
        if (
            hit is None
            and thinking is None
            and request.n == 1
            and not request.tools
            and not request.functions
            and not request.logprobs
            and request.response_format.type == "text"
        ):
            # One canned text choice: what the general plan below comes to.
            return self._plain_chat(request, now, timing)
        return self._planned(request, now, timing, hit, thinking)

    def _planned(
        self,
        request: ChatRequest,
        now: float,
        timing: Override | None,
        hit: Hit | None,
        thinking: Thinking | None,
    ) -> ChatPlan:
        """``chat`` for any request, rule, tools or thinking: every choice
        planned and every value worked out afresh."""
        if hit is not None:
            timing = self.scripted_timing(hit, timing)
        rng = self.picker(request.seed, request.model, request.last_user_text)
        choices = []
        completion_tokens = reasoning_tokens = 0
        for index in range(request.n):
            if thinking is None:
                choice, tokens = self._choice(request, index, rng, hit)
            else:
                thought, spent = self.reasoning(request, thinking, hit)
                left = request
                if request.max_tokens is not None:
                    left = dataclasses.replace(
                        request, max_tokens=max(1, request.max_tokens - spent)
                    )
                choice, tokens = self._choice(left, index, rng, hit)
                choice = dataclasses.replace(choice, reasoning=thought)
                tokens += spent
                reasoning_tokens += spent
            choices.append(choice)
            completion_tokens += tokens
        steps = max(c.steps for c in choices)
        pacing = self.timing.pacing(request.model, steps, timing)
        return built(
            ChatPlan,
            _CHAT_PLAN,
            id=new_id("chatcmpl-"),
            created=int(now),
            model=request.model,
            system_fingerprint=self.config.system_fingerprint,
            choices=tuple(choices),
            usage=built(
                Usage,
                _USAGE,
                prompt_tokens=prompt_tokens(request),
                completion_tokens=completion_tokens,
                reasoning_tokens=reasoning_tokens,
            ),
            stream=request.stream,
            include_usage=request.include_usage,
            content_filter=self.config.stream.content_filter_results,
            pacing=pacing,
            delay_s=self.timing.non_stream_delay(pacing, steps),
            rule=hit.rule if hit is not None else None,
            reasoning_shown=thinking is None or thinking.shown,
        )

    def _plain_chat(
        self, request: ChatRequest, now: float, timing: Override | None
    ) -> ChatPlan:
        """``chat`` for one canned text choice, no rule, tools or thinking:
        the same plan and the same draws, with everything that depends only
        on the config, the reply and the request's limits kept per key."""
        model = request.model
        rng = self.rng
        if request.seed is not None:
            rng = self.picker(request.seed, model, request.last_user_text)
        reply = self.reply_text(rng)
        key = (reply, request.stop, request.max_tokens, model, timing)
        known = self._plain.get(key)
        if known is None:
            made = self._plain_plan(request, reply, timing)
            known = remember(self._plain, key, made, CANNED_CHOICES)
        fields, usage_fields, steps, steady = known
        counts = usage_fields.copy()
        # ``_counted``'s kept count, and ``adopted`` twice, inline: three
        # calls less per plan.
        kept = _COUNTED.get(id(request))
        if kept is not None and kept[0] is request:
            counts["prompt_tokens"] = kept[1]
        else:
            counts["prompt_tokens"] = _counted(request)
        usage = _NEW(Usage)
        _SET(usage, "__dict__", counts)
        values = fields.copy()
        values["id"] = new_id("chatcmpl-")
        values["created"] = int(now)
        values["usage"] = usage
        values["stream"] = request.stream
        values["include_usage"] = request.include_usage
        if not steady:
            pacing = self.timing.pacing(model, steps, timing)
            values["pacing"] = pacing
            values["delay_s"] = self.timing.non_stream_delay(pacing, steps)
        plan: ChatPlan = _NEW(ChatPlan)
        _SET(plan, "__dict__", values)
        return plan

    def _plain_plan(
        self, request: ChatRequest, reply: str, timing: Override | None
    ) -> _PlainPlan:
        """What ``_plain_chat`` keeps for ``reply``: the plan's and its usage's
        fields (in key-sharing dicts, as ``built`` fills them) but for those
        of each request, and whether its pacing takes no draw."""
        choice, tokens = self._canned_choice(request, 0, reply)
        steps = choice.steps
        pacing = self.timing.steady(request.model, timing)
        usage_fields = template(
            Usage, prompt_tokens=0, completion_tokens=tokens, reasoning_tokens=0
        )
        fields = template(
            ChatPlan,
            id="",
            created=0,
            model=request.model,
            system_fingerprint=self.config.system_fingerprint,
            choices=(choice,),
            usage=None,
            stream=False,
            include_usage=False,
            content_filter=self.config.stream.content_filter_results,
            pacing=pacing if pacing is not None else Pacing(),
            delay_s=0.0
            if pacing is None
            else self.timing.non_stream_delay(pacing, steps),
            rule=None,
            reasoning_shown=True,
        )
        return fields, usage_fields, steps, pacing is not None
