"""``POST /v1/moderations``: request model -> engine -> wire."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.models import check_model
from mockai_tw.engine.moderations import moderate
from mockai_tw.engine.rules import input_context
from mockai_tw.journal import HeaderMap
from mockai_tw.request.moderations import parse_moderation_request
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.moderations import moderation_body


class Moderations(ApiResource):
    def render_POST(self, request: server.Request) -> bytes:
        parsed = parse_moderation_request(cast(ApiRequest, request).body())
        config = self.state.config
        check_model(config, parsed.model)
        engine = self.state.engine
        if engine.rules:
            # Only an ``error`` answer applies here; it raises.
            texts = [i.text for i in parsed.inputs]
            context = input_context(
                "moderations", parsed.model, texts, HeaderMap(request.requestHeaders)
            )
            engine.scripted(context, self.state.clock.seconds())
        return send_json(
            request, 200, moderation_body(moderate(config.moderation, parsed))
        )
