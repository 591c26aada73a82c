"""``GET /v1/models`` and ``GET /v1/models/{model}``, from pre-encoded bodies."""

from __future__ import annotations

from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.config import Config
from mockai_tw.engine.models import catalog, model_not_found
from mockai_tw.errors import ApiError
from mockai_tw.web import anthropic
from mockai_tw.web.resources import ApiResource, check_token
from mockai_tw.web.site import send_json
from mockai_tw.wire.models import EncodedModels, encode_models


class Models(ApiResource):
    """The listing; its child is any model id (ids may hold ``:``, ``.``, ``/``).

    An Anthropic client (``anthropic-version`` or ``x-api-key``) is answered
    in Anthropic's shape by ``web/anthropic.py``, behind its own gate.
    """

    _cached: tuple[Config, EncodedModels] | None = None

    def gate(self, request: server.Request) -> ApiError | None:
        """What ``/v1`` asks first: OpenAI's bearer token, unless the
        request is Anthropic's (whose resource checks its own way)."""
        if anthropic.is_anthropic(request):
            return None
        return check_token(request, self.state)

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        if anthropic.is_anthropic(request):
            rest = b"/".join([path, *(request.postpath or [])])
            request.postpath = []
            if not rest:
                return anthropic.ModelList(self.state)
            return anthropic.ModelEntry(
                self.state, unquote(rest.decode("utf-8", "replace"))
            )
        return super().getChildWithDefault(path, request)

    def render(self, request: server.Request) -> bytes | int:
        if anthropic.is_anthropic(request):
            return anthropic.ModelList(self.state).render(request)
        return super().render(request)

    def encoded(self) -> EncodedModels:
        """The bodies for the current config, encoded once per config object.

        ``MockServer.apply`` swaps the config object on reload, so identity is
        the cache key: no hashing of the config on the hot path.
        """
        config = self.state.config
        cached = self._cached
        if cached is None or cached[0] is not config:
            cached = self._cached = (config, encode_models(catalog(config)))
        return cached[1]

    def render_GET(self, request: server.Request) -> bytes:
        return send_json(request, 200, self.encoded().listing)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path and not request.postpath:
            return self  # ``/v1/models/``
        # The rest of the path is the id: ``org/model`` works sent raw or as %2F.
        rest = request.postpath or []
        raw = b"/".join([path, *rest]).decode("utf-8", "replace")
        if request.prepath is not None:
            request.prepath.extend(rest)
        request.postpath = []
        return ModelEntry(self, unquote(raw))


class ModelEntry(ApiResource):
    """One model: 200 with its object, or OpenAI's 404 ``model_not_found``."""

    isLeaf = True

    def __init__(self, models: Models, model_id: str) -> None:
        super().__init__(models.state)
        self.models = models
        self.model_id = model_id

    def render_GET(self, request: server.Request) -> bytes:
        body = self.models.encoded().models.get(self.model_id)
        if body is None:
            raise model_not_found(self.model_id)
        return send_json(request, 200, body)
