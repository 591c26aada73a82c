"""``POST /v1/chat/completions``: request model -> engine -> wire -> delivery."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.models import check_model
from mockai_tw.journal import HeaderMap
from mockai_tw.request.chat import parse_chat_request
from mockai_tw.web.reply import respond, timing_override
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest
from mockai_tw.wire.chat import chat_completion, chat_stream


class ChatCompletions(ApiResource):
    # Azure's flavour swaps these, and names the model in its path.
    render_body = staticmethod(chat_completion)
    render_stream = staticmethod(chat_stream)
    default_model: str | None = None

    def render_POST(self, request: server.Request) -> bytes | int:
        api_request = cast(ApiRequest, request)
        chat = parse_chat_request(api_request.body(), self.default_model)
        state = self.state
        check_model(state.config, chat.model)
        timing = timing_override(state, request)
        plan = state.engine.chat(
            chat, state.clock.seconds(), timing, HeaderMap(request.requestHeaders)
        )
        api_request.reply = plan
        return respond(
            state,
            request,
            model=chat.model,
            tokens=plan.usage.prompt_tokens
            + (chat.max_tokens or plan.usage.completion_tokens),
            body=lambda: self.render_body(plan),
            events=(lambda: self.render_stream(plan)) if plan.stream else None,
            delay_s=plan.delay_s,
            fault=plan.fault,
        )
