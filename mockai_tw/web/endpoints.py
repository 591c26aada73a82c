"""Every endpoint the pipeline serves, each described once.

A description joins a request model, the engine's matcher and planner, the
tokens a rate limit reserves, and the wire renderers.  A flavour (Azure) is
the same description with other renderers; a new endpoint is a new entry.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from mockai_tw.engine import background, tokenizer
from mockai_tw.engine.chat import check_schema, prompt_tokens
from mockai_tw.engine.completions import match_completion, plan_completion
from mockai_tw.engine.embeddings import embeddings
from mockai_tw.engine.moderations import moderate
from mockai_tw.engine.plan import ChatPlan, TokenCount
from mockai_tw.engine.prompt_cache import NO_USE, PromptCache, breakpoints
from mockai_tw.engine.responses import match_response, plan_prepared
from mockai_tw.engine.rules import Claim, Hit, chat_context, input_context
from mockai_tw.engine.timing import Override
from mockai_tw.request.anthropic import (
    MessagesRequest,
    parse_count_tokens_request,
    parse_messages_request,
)
from mockai_tw.request.chat import ChatRequest, parse_chat_request
from mockai_tw.request.completions import parse_completion_request
from mockai_tw.request.embeddings import parse_embeddings_request
from mockai_tw.request.gemini import (
    GeminiRequest,
    parse_batch_embed_request,
    parse_count_request,
    parse_embed_request,
    parse_generate_request,
    parse_stream_request,
)
from mockai_tw.request.moderations import parse_moderation_request
from mockai_tw.request.responses import parse_responses_request
from mockai_tw.web.conversations import append_response, fetch_conversation
from mockai_tw.web.conversations import prepare as prepare_in_conversation
from mockai_tw.web.face import Face
from mockai_tw.web.pipeline import Endpoint
from mockai_tw.web.stored import store_completion
from mockai_tw.wire import anthropic, azure, gemini
from mockai_tw.wire.chat import chat_completion, chat_stream
from mockai_tw.wire.completions import completion, completion_stream
from mockai_tw.wire.embeddings import embeddings_body
from mockai_tw.wire.errors import response_error_event
from mockai_tw.wire.moderations import moderation_body
from mockai_tw.wire.responses import response_body, response_stream

Hits = tuple[Hit | None, ...]


def _reply_tokens(declared: int | None, plan: Callable[[], Any]) -> int:
    """Prompt tokens plus the reply's budget: ``max_tokens`` when given,
    else what the reply really takes (which needs the reply)."""
    usage = plan().usage
    return usage.prompt_tokens + (declared or usage.completion_tokens)


# --- chat completions ---------------------------------------------------------


def _match_chat(
    face: Face, request: ChatRequest, headers: Mapping[str, str], now: float, c: Claim
) -> tuple[ChatRequest, Hits]:
    engine = face.engine
    engine.check(request)
    if not engine.rules:
        return request, (None,)
    return request, (engine.match(chat_context(request, headers, "chat"), now, c),)


def _plan_chat(
    face: Face, request: ChatRequest, hits: Hits, now: float, timing: Override | None
) -> Any:
    return face.engine.chat(request, now, timing, hit=hits[0])


CHAT = Endpoint(
    name="chat",
    parse=parse_chat_request,
    match=_match_chat,
    plan=_plan_chat,
    reserve=lambda request, plan: _reply_tokens(request.max_tokens, plan),
    body=chat_completion,
    stream=chat_stream,
    kept=store_completion,
)


# --- legacy completions -------------------------------------------------------


def _completion_tokens(request: Any, plan: Callable[[], Any]) -> int:
    reply = plan()
    if not request.max_tokens:
        return int(reply.usage.prompt_tokens + reply.usage.completion_tokens)
    reserved = request.max_tokens * request.candidates * reply.prompts
    return int(reply.usage.prompt_tokens + reserved)


COMPLETIONS = Endpoint(
    name="completions",
    parse=parse_completion_request,
    match=lambda face, request, headers, now, claim: (
        request,
        match_completion(face.engine, request, headers, now, claim),
    ),
    plan=lambda face, request, hits, now, timing: plan_completion(
        face.engine, request, now, timing, hits=hits
    ),
    reserve=_completion_tokens,
    body=completion,
    stream=completion_stream,
)


# --- the Responses API ----------------------------------------------------------


def _match_responses(
    face: Face, request: Any, headers: Mapping[str, str], now: float, c: Claim
) -> tuple[Any, Hits]:
    if request.background:
        face.background.check_room()
    prepared = prepare_in_conversation(face, request)
    return prepared, (match_response(face.engine, prepared, headers, now, c),)


def _plan_responses(
    face: Face, prepared: Any, hits: Hits, now: float, timing: Override | None
) -> Any:
    plan = plan_prepared(face.engine, prepared, now, timing, hit=hits[0])
    # A background response answers at once, queued; it runs on the clock.
    return background.queued(plan) if prepared.request.background else plan


def _response_stream(plan: Any) -> Any:
    if plan.request.background:
        plan = background.finished(plan, plan.created_at)
    return response_stream(plan)


def _response_sent(face: Face, plan: Any) -> None:
    face.responses.keep(plan)
    if plan.request.background:
        face.background.start(plan)
    else:
        append_response(face, plan)


RESPONSES = Endpoint(
    name="responses",
    parse=lambda body, model: parse_responses_request(body),
    match=_match_responses,
    plan=_plan_responses,
    reserve=lambda request, plan: _reply_tokens(request.max_output_tokens, plan),
    body=response_body,
    stream=_response_stream,
    error_event=response_error_event,
    sent=_response_sent,
    continues=lambda request: (
        (request.previous_response_id,) if request.previous_response_id else ()
    ),
    fetch=fetch_conversation,
)


# --- embeddings and moderations: only a rule's error answer applies -------------


def _match_inputs(
    endpoint: str, texts: Callable[[Any], list[str]]
) -> Callable[[Face, Any, Mapping[str, str], float, Claim], tuple[Any, Hits]]:
    def match(
        face: Face, request: Any, headers: Mapping[str, str], now: float, c: Claim
    ) -> tuple[Any, Hits]:
        engine = face.engine
        if not engine.rules:
            return request, (None,)
        context = input_context(endpoint, request.model, texts(request), headers)
        return request, (engine.match(context, now, c),)

    return match


EMBEDDINGS = Endpoint(
    name="embeddings",
    parse=parse_embeddings_request,
    match=_match_inputs(
        "embeddings", lambda r: [i for i in r.inputs if isinstance(i, str)]
    ),
    plan=lambda face, request, hits, now, timing: embeddings(request),
    reserve=lambda request, plan: int(plan().prompt_tokens),
    body=embeddings_body,
    timed=False,
)

MODERATIONS = Endpoint(
    name="moderations",
    parse=lambda body, model: parse_moderation_request(body),
    match=_match_inputs("moderations", lambda r: [i.text for i in r.inputs]),
    plan=lambda face, request, hits, now, timing: moderate(
        face.config.moderation, request
    ),
    # Free on the real API; rate limits count the request alone.
    reserve=lambda request, plan: 0,
    body=moderation_body,
    timed=False,
)


# --- Azure: the same endpoints with content-filter annotations ------------------

AZURE_CHAT = dataclasses.replace(
    CHAT, body=azure.chat_completion, stream=azure.chat_stream
)
AZURE_COMPLETIONS = dataclasses.replace(
    COMPLETIONS, body=azure.completion, stream=azure.completion_stream
)
# Embeddings carry no content-filter annotations on Azure: OpenAI's body.
AZURE_EMBEDDINGS = EMBEDDINGS


# --- Anthropic: the Messages API on the chat engine -----------------------------


def _match_provider(
    name: str, check: Callable[[Any], None]
) -> Callable[[Face, Any, Mapping[str, str], float, Claim], tuple[Any, Hits]]:
    """A provider's matcher: its own checks, then the rules asked as for chat
    (the request carries its engine form as ``chat``) under endpoint ``name``."""

    def match(
        face: Face, request: Any, headers: Mapping[str, str], now: float, c: Claim
    ) -> tuple[Any, Hits]:
        check(request)
        engine = face.engine
        if not engine.rules:
            return request, (None,)
        context = chat_context(request.chat, headers, name)
        return request, (engine.match(context, now, c),)

    return match


def _check_tools(request: MessagesRequest) -> None:
    """Unusable ``input_schema``s refused before answering, named Anthropic's way."""
    for i, tool in enumerate(request.chat.tools):
        if tool.parameters is not None:
            check_schema(tool.parameters, f"tools.{i}.input_schema")


# Each server's prompt cache (per process, as its other in-memory state).
_CACHES: weakref.WeakKeyDictionary[Any, PromptCache] = weakref.WeakKeyDictionary()


def prompt_cache(face: Face) -> PromptCache:
    found = _CACHES.get(face)
    if found is None:
        found = _CACHES[face] = PromptCache()
    return found


def _media_tokens(request: MessagesRequest) -> int:
    """What images and documents add to the prompt the engine counts."""
    texts = request.document_texts
    return request.media_tokens + sum(tokenizer.count(t, request.model) for t in texts)


def _plan_messages(
    face: Face, request: MessagesRequest, hits: Hits, now: float, t: Override | None
) -> ChatPlan:
    """The chat plan (thinking first when asked), its prompt with the
    images' tokens, split by what the prompt cache read and wrote."""
    plan = face.engine.chat(
        request.chat, now, t, hit=hits[0], thinking=request.thinking
    )
    prompt = plan.usage.prompt_tokens + _media_tokens(request)
    use = NO_USE
    if any(s.ttl_s is not None for s in request.segments):
        points = breakpoints(request.model, request.segments, prompt)
        use = prompt_cache(face).use(points, now)
    usage = dataclasses.replace(
        plan.usage,
        prompt_tokens=prompt,
        cache_read_tokens=use.read,
        cache_write_5m_tokens=use.written_5m,
        cache_write_1h_tokens=use.written_1h,
    )
    return dataclasses.replace(plan, usage=usage)


MESSAGES = Endpoint(
    name="messages",
    parse=parse_messages_request,
    match=_match_provider("messages", _check_tools),
    plan=_plan_messages,
    reserve=lambda request, plan: _reply_tokens(request.max_tokens, plan),
    body=anthropic.message_body,
    stream=anthropic.message_stream,
    error_body=anthropic.error_body,
    error_event=anthropic.error_event,
    headers=anthropic.ratelimit_headers,
)


def _counting(
    check: Callable[[Any], None], extra: Callable[[Any], int] = lambda request: 0
) -> Callable[..., TokenCount]:
    """A provider's token-count planner: its own checks, then the prompt as
    the engine counts it, and ``extra`` (so it equals the reply's input
    tokens)."""

    def plan(
        face: Face, request: Any, hits: Hits, now: float, timing: Override | None
    ) -> TokenCount:
        check(request)
        return TokenCount(request.model, prompt_tokens(request.chat) + extra(request))

    return plan


COUNT_TOKENS = Endpoint(
    name="count_tokens",
    parse=parse_count_tokens_request,
    # Counting answers no rule: only the request budget applies.
    match=lambda face, request, headers, now, claim: (request, (None,)),
    plan=_counting(_check_tools, _media_tokens),
    reserve=lambda request, plan: 0,
    body=anthropic.count_body,
    timed=False,
    error_body=anthropic.error_body,
    error_event=anthropic.error_event,
    headers=anthropic.ratelimit_headers,
)


# --- Google Gemini: generateContent on the chat engine --------------------------


def _check_declarations(request: GeminiRequest) -> None:
    """Unusable ``parameters`` / ``responseSchema`` refused before answering."""
    for i, tool in enumerate(request.chat.tools):
        if tool.parameters is not None:
            check_schema(
                tool.parameters, f"tools.function_declarations[{i}].parameters"
            )
    fmt = request.chat.response_format
    if fmt.type == "json_schema":
        check_schema(fmt.schema, "generation_config.response_schema")


GENERATE_CONTENT = Endpoint(
    name="gemini",
    parse=parse_generate_request,
    match=_match_provider("gemini", _check_declarations),
    plan=lambda face, request, hits, now, timing: face.engine.chat(
        request.chat, now, timing, hit=hits[0], thinking=request.thinking
    ),
    reserve=lambda request, plan: _reply_tokens(request.max_tokens, plan),
    body=gemini.generate_body,
    stream=gemini.generate_stream,
    error_body=gemini.error_body,
    error_event=gemini.error_event,
    headers=gemini.no_headers,
    overloaded_status=503,
)

STREAM_GENERATE_CONTENT = dataclasses.replace(
    GENERATE_CONTENT, parse=parse_stream_request
)
# Without ``?alt=sse``: the same stream framed as one growing JSON array.
STREAM_GENERATE_CONTENT_ARRAY = dataclasses.replace(
    STREAM_GENERATE_CONTENT,
    stream=gemini.generate_array_stream,
    error_event=gemini.array_error_event,
)


GEMINI_COUNT_TOKENS = Endpoint(
    name="gemini_count_tokens",
    parse=parse_count_request,
    # Counting answers no rule: only the request budget applies.
    match=lambda face, request, headers, now, claim: (request, (None,)),
    plan=_counting(_check_declarations),
    reserve=lambda request, plan: 0,
    body=gemini.count_body,
    timed=False,
    error_body=gemini.error_body,
    error_event=gemini.error_event,
    headers=gemini.no_headers,
    overloaded_status=503,
)


def _gemini_embed(body: Callable[[Any], bytes], parse: Any) -> Endpoint:
    """``embedContent`` / ``batchEmbedContents`` on the embeddings engine."""
    return Endpoint(
        name="embeddings",
        parse=parse,
        match=lambda face, request, headers, now, claim: (
            request,
            _match_inputs("embeddings", lambda r: list(r.embeddings.inputs))(
                face, request, headers, now, claim
            )[1],
        ),
        plan=lambda face, request, hits, now, timing: embeddings(request.embeddings),
        reserve=lambda request, plan: int(plan().prompt_tokens),
        body=body,
        timed=False,
        error_body=gemini.error_body,
        error_event=gemini.error_event,
        headers=gemini.no_headers,
        overloaded_status=503,
    )


GEMINI_EMBED = _gemini_embed(gemini.embed_body, parse_embed_request)
GEMINI_BATCH_EMBED = _gemini_embed(gemini.batch_embed_body, parse_batch_embed_request)
