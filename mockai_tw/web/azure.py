"""The Azure OpenAI flavour: ``/openai/deployments/{deployment}/...?api-version=``.

The same request models, engine and plans as ``/v1``. What differs is here:
the deployment in the path stands for the model, the key may come in an
``api-key`` header, ``api-version`` is required, gateway errors (auth,
api-version, unknown path) use Azure's ``{"error": {"code", "message"}}``
shape, and every response carries ``apim-request-id``. The content-filter
annotations are the Azure renderers' business (``wire/azure.py``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING
from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource, Resource

from mockai_tw.web.endpoints import AZURE_CHAT, AZURE_COMPLETIONS, AZURE_EMBEDDINGS
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.resources import Branch, check_token
from mockai_tw.web.site import send_json
from mockai_tw.wire import azure

if TYPE_CHECKING:
    from mockai_tw.web.face import Face

APIM_REQUEST_ID = b"apim-request-id"

_MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include"
    " subscription key when making requests to an API."
)
_INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure"
    " to provide a valid key for an active subscription and use a correct regional"
    " API endpoint for your resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the"
    " deployment within the last 5 minutes, please wait a moment and try again."
)
_NO_API_VERSION = (
    "Missing required query parameter: api-version. Add it to the URL, for"
    " example ?api-version=2024-10-21."
)


def stamp(request: server.Request) -> None:
    """Give the response the ``apim-request-id`` Azure's gateway adds to all."""
    if not request.responseHeaders.hasHeader(APIM_REQUEST_ID):
        request.setHeader(APIM_REQUEST_ID, str(uuid.uuid4()).encode())


class AzureError(Resource):
    """An error in Azure's gateway shape (not OpenAI's: no type, no param)."""

    isLeaf = True

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__()
        self.status = status
        self.code = code
        self.message = message

    def render(self, request: server.Request) -> int:
        stamp(request)
        body = send_json(
            request, self.status, azure.error_body(self.code, self.message)
        )
        request.setHeader(b"content-length", b"%d" % len(body))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()
        return server.NOT_DONE_YET


def not_found() -> AzureError:
    return AzureError(404, "404", "Resource not found")


class AzureBranch(Branch):
    """An interior segment of the Azure tree: unknown children are Azure 404s."""

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return not_found()

    def render(self, request: server.Request) -> int:
        return not_found().render(request)


class AzureRoot(AzureBranch):
    """``/openai``: stamps, authenticates and checks ``api-version`` before routing."""

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        stamp(request)
        error = check_token(request, self.state, api_key_header=True)
        if error is not None:
            message = _INVALID_KEY if error.code == "invalid_api_key" else _MISSING_KEY
            return AzureError(401, "401", message)
        versions = request.args.get(b"api-version") if request.args else None
        if not versions or not versions[0].strip():
            return AzureError(400, "BadRequest", _NO_API_VERSION)
        return super().getChildWithDefault(path, request)


class Deployments(AzureBranch):
    """``/openai/deployments/{deployment}``: any name is a deployment, unless
    ``strict_models`` limits them to the configured ``models``."""

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path:
            return not_found()
        name = unquote(path.decode("utf-8", "replace"))
        config = self.state.config
        if config.strict_models and name not in config.models:
            return AzureError(404, "DeploymentNotFound", _NO_DEPLOYMENT)
        return Deployment(self.state, name)


class Deployment(AzureBranch):
    """The ``/v1`` endpoints under a deployment: same pipeline, rate limits,
    faults and timing; the deployment stands for the model."""

    def __init__(self, face: Face, name: str) -> None:
        super().__init__(face)
        chat = AzureBranch(face)
        chat.putChild(b"completions", EndpointResource(face, AZURE_CHAT, name))
        self.putChild(b"chat", chat)
        self.putChild(b"completions", EndpointResource(face, AZURE_COMPLETIONS, name))
        self.putChild(b"embeddings", EndpointResource(face, AZURE_EMBEDDINGS, name))


def azure_tree(face: Face) -> AzureRoot:
    """The ``/openai`` resource, for the root to mount."""
    root = AzureRoot(face)
    root.putChild(b"deployments", Deployments(face))
    return root
