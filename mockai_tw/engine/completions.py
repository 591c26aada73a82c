"""Legacy completions: what to answer, as a CompletionPlan.

The same engine as chat (reply picker, limits, tokenizer, chunking); what is
particular to ``text_completion`` lives here: several prompts, ``echo``,
``best_of`` and the synthetic ``logprobs``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from mockai_tw.engine import tokenizer
from mockai_tw.engine.chat import (
    UNMATCHED,
    Engine,
    Unmatched,
    apply_limits,
    synthetic_logprobs,
)
from mockai_tw.engine.chunking import chunk
from mockai_tw.engine.ids import new_id
from mockai_tw.engine.plan import CompletionChoice, CompletionPlan, Usage
from mockai_tw.engine.rules import NO_HEADERS, Claim, Hit, prompt_context, render
from mockai_tw.engine.timing import Override
from mockai_tw.request.completions import CompletionRequest, Prompt


def prompt_tokens(prompt: Prompt, model: str) -> int:
    if prompt.token_ids is not None:
        return len(prompt.token_ids)
    return tokenizer.count(prompt.text, model)


def _choice(
    engine: Engine,
    request: CompletionRequest,
    prompt: Prompt,
    index: int,
    text: str,
    finish: str,
    rng: random.Random,
    chunking: str | None = None,
) -> CompletionChoice:
    """With logprobs the pieces are tokens, one chunk each, as OpenAI streams them."""
    model = request.model
    echo = prompt.text if request.echo else ""
    # text_offset counts from the start of the prompt, as OpenAI counts it.
    offset = 0 if request.echo else len(prompt.text)
    if request.logprobs is None:
        mode = chunking or engine.config.stream.chunking
        pieces = ((echo,) if echo else ()) + chunk(text, mode, model)
        return CompletionChoice(index, pieces, finish, offset=offset)
    pieces = chunk(echo, "token", model) + chunk(text, "token", model)
    logprobs = synthetic_logprobs(pieces, rng, request.logprobs)
    return CompletionChoice(index, pieces, finish, logprobs, offset)


def plan_completion(
    engine: Engine,
    request: CompletionRequest,
    now: float,
    timing: Override | None = None,
    headers: Mapping[str, str] = NO_HEADERS,
    hits: Sequence[Hit | None] | Unmatched = UNMATCHED,
) -> CompletionPlan:
    """``best_of`` candidates per prompt are generated (and billed); ``n`` returned.

    Choice ``i`` of prompt ``p`` gets index ``p * n + i``, as OpenAI numbers them.
    Rules are asked once per prompt (``headers`` have lower-cased names); the
    pipeline passes the ``hits`` it matched already, one per prompt.
    """
    if isinstance(hits, Unmatched):
        hits = [
            engine.scripted(prompt_context(request, prompt, headers), now)
            if engine.rules
            else None
            for prompt in request.prompts
        ]
    choices = []
    completion_tokens = 0
    first_hit: Hit | None = None
    for p, prompt in enumerate(request.prompts):
        key = prompt.text if prompt.token_ids is None else repr(prompt.token_ids)
        rng = engine.picker(request.seed, request.model, key)
        # Its own stream of numbers, so asking for logprobs never changes a reply.
        scores = engine.picker(request.seed, "logprobs", request.model, key)
        hit = hits[p]
        first_hit = first_hit or hit
        for i in range(request.candidates):
            reply = (
                engine.reply_text(rng)
                if hit is None
                else render(hit, rng, engine, i, request.candidates).as_text
            )
            text, finish = apply_limits(
                reply, request.stop, request.max_tokens, request.model
            )
            completion_tokens += tokenizer.count(text, request.model)
            if i < request.n:
                index = p * request.n + i
                chunking = hit.chunking if hit is not None else None
                choices.append(
                    _choice(
                        engine, request, prompt, index, text, finish, scores, chunking
                    )
                )
    # The suffix is input too: it is sent with every prompt.
    suffix = tokenizer.count(request.suffix or "", request.model) * len(request.prompts)
    stream = engine.config.stream
    steps = max((len(c.pieces) for c in choices), default=0)
    timing = engine.scripted_timing(first_hit, timing)
    pacing = engine.timing.pacing(request.model, steps, timing)
    return CompletionPlan(
        id=new_id("cmpl-"),
        created=int(now),
        model=request.model,
        system_fingerprint=engine.config.system_fingerprint,
        choices=tuple(choices),
        usage=Usage(
            sum(prompt_tokens(p, request.model) for p in request.prompts) + suffix,
            completion_tokens,
        ),
        prompts=len(request.prompts),
        stream=request.stream,
        include_usage=request.include_usage,
        content_filter=stream.content_filter_results,
        pacing=pacing,
        delay_s=engine.timing.non_stream_delay(pacing, steps),
        rule=first_hit.rule if first_hit is not None else None,
    )


def match_completion(
    engine: Engine,
    request: CompletionRequest,
    headers: Mapping[str, str],
    now: float,
    claim: Claim,
) -> tuple[Hit | None, ...]:
    """The rule for each prompt, claimed but not committed."""
    if not engine.rules:
        return (None,) * len(request.prompts)
    return tuple(
        engine.match(prompt_context(request, prompt, headers), now, claim)
        for prompt in request.prompts
    )
