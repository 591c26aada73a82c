"""``POST /v1/completions``: request model -> engine -> wire -> delivery."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.completions import plan_completion
from mockai_tw.engine.models import check_model
from mockai_tw.journal import HeaderMap
from mockai_tw.request.completions import parse_completion_request
from mockai_tw.web.reply import respond, timing_override
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest
from mockai_tw.wire.completions import completion, completion_stream


class Completions(ApiResource):
    # Azure's flavour swaps these, and names the model in its path.
    render_body = staticmethod(completion)
    render_stream = staticmethod(completion_stream)
    default_model: str | None = None

    def render_POST(self, request: server.Request) -> bytes | int:
        api_request = cast(ApiRequest, request)
        parsed = parse_completion_request(api_request.body(), self.default_model)
        state = self.state
        check_model(state.config, parsed.model)
        timing = timing_override(state, request)
        plan = plan_completion(
            state.engine,
            parsed,
            state.clock.seconds(),
            timing,
            HeaderMap(request.requestHeaders),
        )
        api_request.reply = plan
        return respond(
            state,
            request,
            model=parsed.model,
            tokens=plan.usage.prompt_tokens
            + (
                parsed.max_tokens * parsed.candidates * plan.prompts
                if parsed.max_tokens
                else plan.usage.completion_tokens
            ),
            body=lambda: self.render_body(plan),
            events=(lambda: self.render_stream(plan)) if plan.stream else None,
            delay_s=plan.delay_s,
            fault=plan.fault,
        )
