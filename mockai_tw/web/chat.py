"""``POST /v1/chat/completions``: request model -> engine -> wire -> delivery."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.models import check_model
from mockai_tw.request.chat import parse_chat_request
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.chat import chat_completion, chat_stream


class ChatCompletions(ApiResource):
    def render_POST(self, request: server.Request) -> bytes | int:
        api_request = cast(ApiRequest, request)
        chat = parse_chat_request(api_request.body())
        state = self.state
        check_model(state.config, chat.model)
        plan = state.engine.chat(chat, state.clock.seconds())
        if not plan.stream:
            return send_json(request, 200, chat_completion(plan))
        state.stream(api_request, chat_stream(plan))
        return server.NOT_DONE_YET
