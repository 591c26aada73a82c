"""``POST /v1/embeddings``: request model -> engine -> wire."""

from __future__ import annotations

from typing import cast

from twisted.web import server

from mockai_tw.engine.embeddings import embeddings
from mockai_tw.engine.models import check_model
from mockai_tw.engine.rules import input_context
from mockai_tw.journal import HeaderMap
from mockai_tw.request.embeddings import parse_embeddings_request
from mockai_tw.web.reply import respond
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest
from mockai_tw.wire.embeddings import embeddings_body


class Embeddings(ApiResource):
    # Azure names the model in its path.
    default_model: str | None = None

    def render_POST(self, request: server.Request) -> bytes | int:
        body = cast(ApiRequest, request).body()
        parsed = parse_embeddings_request(body, self.default_model)
        check_model(self.state.config, parsed.model)
        engine = self.state.engine
        if engine.rules:
            # Only an ``error`` answer applies here; it raises.
            texts = [i for i in parsed.inputs if isinstance(i, str)]
            context = input_context(
                "embeddings", parsed.model, texts, HeaderMap(request.requestHeaders)
            )
            engine.scripted(context, self.state.clock.seconds())
        result = embeddings(parsed)
        return respond(
            self.state,
            request,
            model=parsed.model,
            tokens=result.prompt_tokens,
            body=lambda: embeddings_body(result),
        )
