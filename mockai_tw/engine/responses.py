"""The Responses API: what to answer, as a ResponsePlan, and where it is kept.

No second engine: a Responses request is put to the chat engine as the chat
request it amounts to (instructions and ``input`` items as messages, flat
function tools, ``text.format`` as ``response_format``), so replies, tool
choice, schema-valid arguments, limits, token counts and timing are the
ones chat gives.  What is particular to ``/v1/responses`` lives here: output
items, ``incomplete`` answers, and the bounded store that makes
``previous_response_id``, retrieval and deletion work.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mockai_tw.engine.chat import UNMATCHED, Engine, Unmatched, check_schema
from mockai_tw.engine.ids import hex_id
from mockai_tw.engine.plan import (
    CallOutput,
    ListedItem,
    MessageOutput,
    OutputItem,
    ResponsePlan,
)
from mockai_tw.engine.rules import NO_HEADERS, Claim, Hit, chat_context
from mockai_tw.engine.timing import Override
from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.chat import ChatRequest, Message
from mockai_tw.request.responses import InputItem, ResponsesRequest


class ResponseStore:
    """The last ``size`` stored responses, least recently used dropped first.

    In memory and per process: with several workers on one port a chain only
    works on the worker that stored it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, ResponsePlan] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._entries) > size:
            self._entries.popitem(last=False)

    def get(self, response_id: str) -> ResponsePlan | None:
        found = self._entries.get(response_id)
        if found is not None:
            self._entries.move_to_end(response_id)
        return found

    def keep(self, plan: ResponsePlan) -> None:
        """Keep ``plan`` unless its request said ``store: false``."""
        if not plan.request.store:
            return
        self._entries[plan.id] = plan
        self._entries.move_to_end(plan.id)
        self.resize(self.size)

    def delete(self, response_id: str) -> bool:
        return self._entries.pop(response_id, None) is not None


def not_found(response_id: str) -> ApiError:
    return ApiError(
        404,
        f"Response with id '{response_id}' not found.",
        param="response_id",
    )


def previous_not_found(response_id: str) -> ApiError:
    return ApiError(
        404,
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def _as_messages(items: Iterable[InputItem]) -> Iterator[dict[str, Any]]:
    """Input items as the chat messages they amount to (for counting and choice).

    Consecutive function calls become one assistant message with several
    ``tool_calls``, as chat would have sent them.
    """
    calls: list[dict[str, Any]] = []
    for item in items:
        if item.type == "function_call":
            calls.append(
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments},
                }
            )
            continue
        if calls:
            yield {"role": "assistant", "content": None, "tool_calls": calls}
            calls = []
        if item.type == "function_call_output":
            yield {
                "role": "tool",
                "tool_call_id": item.call_id,
                "content": item.raw.get("output"),
            }
        else:
            yield {"role": item.role, "content": item.raw.get("content")}
    if calls:
        yield {"role": "assistant", "content": None, "tool_calls": calls}


def _output_messages(output: tuple[OutputItem, ...]) -> Iterator[dict[str, Any]]:
    calls = [
        {
            "id": o.call.id,
            "type": "function",
            "function": {"name": o.call.name, "arguments": o.call.arguments},
        }
        for o in output
        if isinstance(o, CallOutput)
    ]
    if calls:
        yield {"role": "assistant", "content": None, "tool_calls": calls}
    for o in output:
        if isinstance(o, MessageOutput):
            yield {"role": "assistant", "content": o.text}


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p.get("text"), str))
    return ""


def _check(request: ResponsesRequest, context: tuple[dict[str, Any], ...]) -> None:
    """Schemas and call ids, named the Responses way, before chat sees them."""
    for i, tool in enumerate(request.tools):
        if tool["type"] == "function" and tool["parameters"] is not None:
            check_schema(tool["parameters"], f"tools[{i}].parameters")
    if request.text_format.type == "json_schema":
        check_schema(request.text_format.schema, "text.format.schema")
    known = {
        call["id"] for message in context for call in message.get("tool_calls") or ()
    }
    for i, item in enumerate(request.input):
        if item.type == "function_call":
            known.add(item.call_id)
        elif item.type == "function_call_output" and item.call_id not in known:
            raise invalid(
                f"No tool call found for function call output with call_id"
                f" {item.call_id}.",
                param=f"input[{i}].call_id",
            )


def _chat_request(
    request: ResponsesRequest, messages: tuple[dict[str, Any], ...]
) -> ChatRequest:
    return ChatRequest(
        model=request.model,
        messages=tuple(Message(m["role"], _text_of(m), m) for m in messages),
        stream=request.stream,
        max_tokens=request.max_output_tokens,
        seed=request.seed,
        user=request.user,
        temperature=request.temperature,
        top_p=request.top_p,
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs,
        tools=request.functions,
        tool_choice=request.tool_choice if request.functions else "none",
        forced_tool=request.forced_tool,
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=request.text_format,
        metadata=dict(request.metadata) if request.metadata else None,
        body=request.body,
    )


def _listed(items: tuple[InputItem, ...]) -> tuple[ListedItem, ...]:
    prefixes = {"message": "msg_", "function_call": "fc_"}
    out = []
    for item in items:
        given = item.raw.get("id")
        item_id = given if given else hex_id(prefixes.get(item.type, "fco_"))
        out.append(ListedItem(item_id, item))
    return tuple(out)


@dataclass(frozen=True)
class Prepared:
    """A Responses request in its conversation, as the chat engine sees it."""

    request: ResponsesRequest
    chat: ChatRequest
    conversation: tuple[dict[str, Any], ...]


def prepare_response(
    store: ResponseStore,
    request: ResponsesRequest,
    before: tuple[dict[str, Any], ...] = (),
) -> Prepared:
    """Find the response it follows and check it: every 400/404 comes here.

    ``before``: the conversation's items as chat messages (``conversation``).
    """
    history: tuple[dict[str, Any], ...] = before
    if request.previous_response_id is not None:
        previous = store.get(request.previous_response_id)
        if previous is None:
            raise previous_not_found(request.previous_response_id)
        history = previous.context
    _check(request, history)
    own = tuple(_as_messages(request.input))
    conversation = history + own
    if not conversation:
        raise invalid(
            "Invalid 'input': expected at least one input item.", param="input"
        )
    instructions: tuple[dict[str, Any], ...] = ()
    if request.instructions:
        instructions = ({"role": "developer", "content": request.instructions},)
    chat = _chat_request(request, instructions + conversation)
    return Prepared(request, chat, conversation)


def match_response(
    engine: Engine,
    prepared: Prepared,
    headers: Mapping[str, str],
    now: float,
    claim: Claim,
) -> Hit | None:
    """The rule that answers, claimed but not committed."""
    if not engine.rules:
        return None
    return engine.match(chat_context(prepared.chat, headers, "responses"), now, claim)


def plan_response(
    engine: Engine,
    store: ResponseStore,
    request: ResponsesRequest,
    now: float,
    timing: Override | None = None,
    headers: Mapping[str, str] = NO_HEADERS,
) -> ResponsePlan:
    """Answer ``request`` in the context of the response it follows.

    The caller keeps the plan (``ResponseStore.keep``) once it is sent, so a
    refused request (rate limit, fault) leaves nothing behind.
    """
    prepared = prepare_response(store, request)
    return plan_prepared(engine, prepared, now, timing, headers)


def plan_prepared(
    engine: Engine,
    prepared: Prepared,
    now: float,
    timing: Override | None = None,
    headers: Mapping[str, str] = NO_HEADERS,
    hit: Hit | Unmatched | None = UNMATCHED,
) -> ResponsePlan:
    """The answer to a prepared request (``hit``: as the pipeline matched it)."""
    request, conversation = prepared.request, prepared.conversation
    try:
        chat = engine.chat(
            prepared.chat,
            now,
            timing,
            headers=headers,
            endpoint="responses",
            hit=hit,
        )
    except ApiError as error:
        if error.param != "response_format":
            raise
        raise dataclasses.replace(error, param="text.format") from None
    choice = chat.choices[0]
    output: tuple[OutputItem, ...]
    status, reason = "completed", None
    if choice.tool_calls:
        output = tuple(CallOutput(hex_id("fc_"), c) for c in choice.tool_calls)
    else:
        if choice.finish_reason == "length":
            status, reason = "incomplete", "max_output_tokens"
        message = MessageOutput(hex_id("msg_"), choice.pieces, status, choice.logprobs)
        output = (message,)
    last_step = max(choice.steps - 1, 0)
    took = chat.pacing.due(last_step) if request.stream else chat.delay_s
    return ResponsePlan(
        id=hex_id("resp_"),
        created_at=chat.created,
        completed_at=int(now + took),
        request=request,
        output=output,
        usage=chat.usage,
        status=status,
        incomplete_reason=reason,
        pacing=chat.pacing,
        delay_s=chat.delay_s,
        input_items=_listed(request.input),
        context=conversation + tuple(_output_messages(output)),
        rule=chat.rule,
    )
