"""The embeddings ``list``: floats, or base64 of little-endian float32."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

import orjson

from mockai_tw.engine.plan import EmbeddingsPlan

_SWAP = sys.byteorder != "little"


def _base64(vector: array[float]) -> str:
    # What the SDK asks for by default and decodes as little-endian float32.
    if _SWAP:
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")


def embeddings_body(plan: EmbeddingsPlan) -> bytes:
    encode: Any = _base64 if plan.encoding_format == "base64" else array.tolist
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(vector)}
                for i, vector in enumerate(plan.vectors)
            ],
            "model": plan.model,
            "usage": {
                "prompt_tokens": plan.prompt_tokens,
                "total_tokens": plan.prompt_tokens,
            },
        }
    )
