"""Server-Sent Events framing, as OpenAI frames them."""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"
