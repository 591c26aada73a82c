"""``model`` objects and the ``list`` of them, encoded once per catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from mockai_tw.engine.plan import ModelInfo


def model_json(info: ModelInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "object": "model",
        "created": info.created,
        "owned_by": info.owned_by,
    }


@dataclass(frozen=True)
class EncodedModels:
    """Ready bodies: the listing and each model, since neither ever changes."""

    listing: bytes
    models: Mapping[str, bytes]


def encode_models(infos: Iterable[ModelInfo]) -> EncodedModels:
    objects = [model_json(info) for info in infos]
    return EncodedModels(
        listing=orjson.dumps({"object": "list", "data": objects}),
        models={o["id"]: orjson.dumps(o) for o in objects},
    )
