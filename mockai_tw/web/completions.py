"""``POST /v1/completions``: request model -> engine -> wire -> delivery."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.completions import plan_completion
from mockai_tw.engine.models import check_model
from mockai_tw.request.completions import parse_completion_request
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.completions import completion, completion_stream


class Completions(ApiResource):
    def render_POST(self, request: server.Request) -> bytes | int:
        api_request = cast(ApiRequest, request)
        parsed = parse_completion_request(api_request.body())
        state = self.state
        check_model(state.config, parsed.model)
        plan = plan_completion(state.engine, parsed, state.clock.seconds())
        if not plan.stream:
            return send_json(request, 200, completion(plan))
        state.stream(api_request, completion_stream(plan))
        return server.NOT_DONE_YET
