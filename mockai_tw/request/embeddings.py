"""``POST /v1/embeddings``: the body as a frozen EmbeddingsRequest, or a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.common import Fields, missing, parse_body, wrong_type

#: OpenAI's limit on inputs in one request.
MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")

# A string, or a token array.
EmbeddingInput = str | tuple[int, ...]


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    inputs: tuple[EmbeddingInput, ...]
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None


def _invalid_input(detail: str) -> ApiError:
    # OpenAI's own wording for a malformed ``input``, with what is wrong.
    return invalid(
        f"'$.input' is invalid. {detail} Please check the API reference:"
        " https://platform.openai.com/docs/api-reference.",
        param="input",
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong_type_in_input(where: str, expected: str, value: Any) -> ApiError:
    """A type error inside ``input``: the message points in, ``param`` stays put."""
    error = wrong_type(where, expected, value)
    return invalid(error.message, param="input", code=error.code)


def _tokens(value: list[Any], where: str) -> tuple[int, ...]:
    if not value:
        raise _invalid_input(f"{where} is an empty token array.")
    for i, token in enumerate(value):
        if not _is_int(token):
            raise _wrong_type_in_input(f"{where}[{i}]", "an integer", token)
        if token < 0:
            raise _invalid_input(f"{where}[{i}] is a negative token id.")
    return tuple(value)


def _inputs(value: Any) -> tuple[EmbeddingInput, ...]:
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        if not value:
            raise _invalid_input("It is an empty string.")
        return (value,)
    if not isinstance(value, list):
        raise wrong_type(
            "input", "one of a string, an array of strings or token arrays", value
        )
    if not value:
        raise invalid(
            "Invalid 'input': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead.",
            param="input",
            code="empty_array",
        )
    if len(value) > MAX_INPUTS:
        raise invalid(
            f"Invalid 'input': array too long. Expected an array with maximum length"
            f" {MAX_INPUTS}, but got an array with length {len(value)} instead.",
            param="input",
            code="array_above_max_length",
        )
    first = value[0]
    if _is_int(first):
        # One token array.
        return (_tokens(value, "input"),)
    out: list[EmbeddingInput] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if isinstance(first, str):
            if not isinstance(item, str):
                raise _wrong_type_in_input(where, "a string", item)
            if not item:
                raise _invalid_input(f"{where} is an empty string.")
            out.append(item)
        elif isinstance(first, list):
            if not isinstance(item, list):
                raise _wrong_type_in_input(where, "an array of integers", item)
            out.append(_tokens(item, where))
        else:
            raise _wrong_type_in_input(where, "a string, integer or array", item)
    return tuple(out)


def parse_embeddings_request(
    data: bytes, default_model: str | None = None
) -> EmbeddingsRequest:
    body = parse_body(data, default_model)
    fields = Fields(body)
    model = fields.string("model")
    if not model:
        raise invalid("you must provide a model parameter", param="model")
    inputs = _inputs(body.get("input"))
    encoding_format = fields.string("encoding_format") or "float"
    if encoding_format not in ENCODING_FORMATS:
        raise invalid(
            f"Invalid value: '{encoding_format}'. Supported values are: 'float' and"
            " 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    return EmbeddingsRequest(
        model=model,
        inputs=inputs,
        encoding_format=encoding_format,
        dimensions=fields.integer("dimensions", low=1),
        user=fields.string("user"),
    )
