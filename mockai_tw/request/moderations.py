"""``POST /v1/moderations``: the body as a frozen ModerationRequest, or a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import invalid
from mockai_tw.request.common import Fields, missing, parse_body, worded, wrong_type

DEFAULT_MODEL = "omni-moderation-latest"


@dataclass(frozen=True)
class ModerationInput:
    """One thing to classify: its text, and how many images came with it."""

    text: str
    images: int = 0
    # False for parts that are all images: text categories then apply to nothing.
    has_text: bool = True


@dataclass(frozen=True)
class ModerationRequest:
    model: str
    # One result each: a string each for an array of strings, one for parts.
    inputs: tuple[ModerationInput, ...]


def _parts(parts: list[Any]) -> ModerationInput:
    texts: list[str] = []
    images = 0
    for i, part in enumerate(parts):
        where = f"input[{i}]"
        fields = Fields(checks.mapping(part, where), f"{where}.")
        kind = fields.string("type", required=True)
        if kind == "text":
            texts.append(fields.string("text", required=True) or "")
        elif kind == "image_url":
            image = fields.obj("image_url")
            if image is None:
                raise missing(f"{where}.image_url")
            Fields(image, f"{where}.image_url.").string("url", required=True)
            images += 1
        else:
            raise invalid(
                f"Invalid value: '{kind}'. Supported values are: 'text' and"
                " 'image_url'.",
                param=f"{where}.type",
                code="invalid_value",
            )
    return ModerationInput(" ".join(texts), images, has_text=bool(texts))


def _inputs(value: Any) -> tuple[ModerationInput, ...]:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        return (ModerationInput(value),)
    if not isinstance(value, list):
        raise wrong_type("input", "one of a string or array", value)
    checks.array(value, "input", min_items=1)
    if isinstance(value[0], dict):
        return (_parts(value),)
    return tuple(
        ModerationInput(checks.string(item, f"input[{i}]"))
        for i, item in enumerate(value)
    )


@worded
def parse_moderation_request(data: bytes) -> ModerationRequest:
    body = parse_body(data)
    model = Fields(body).string("model")
    if model == "":
        raise invalid("you must provide a model parameter", param="model")
    return ModerationRequest(
        model=model or DEFAULT_MODEL, inputs=_inputs(body.get("input"))
    )
