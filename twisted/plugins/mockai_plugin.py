"""The twistd drop-in: names the tap module by string so `twistd --help` stays cheap."""

from twisted.application.service import ServiceMaker

mockai = ServiceMaker(
    "mockai",
    "mockai_tw.tap",
    "A mock of the OpenAI HTTP API (chat completions, SSE streams, auth, health).",
    "mockai",
)
