"""``POST /v1/embeddings``: the body as a frozen EmbeddingsRequest, or a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.common import (
    INT32_MAX,
    Fields,
    Source,
    check_integer,
    missing,
    out_of_range,
    parse_body,
    worded,
    wrong_type,
)

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


def _in_input(error: ApiError) -> ApiError:
    """An error inside ``input``: the message points in, ``param`` stays put."""
    return invalid(error.message, param="input", code=error.code)


def _wrong_type_in_input(where: str, expected: str, value: Any) -> ApiError:
    return _in_input(wrong_type(where, expected, value))


def _tokens(value: list[Any], where: str, body: Fields, *path: int) -> tuple[int, ...]:
    """A token array at ``path`` below ``input`` (for literals orjson cannot hold)."""
    if not value:
        raise _invalid_input(f"{where} is an empty token array.")
    tokens = list(value)
    for i, token in enumerate(value):
        if type(token) is int and 0 <= token <= INT32_MAX:
            continue
        numeric = isinstance(token, (int, float)) and not isinstance(token, bool)
        if numeric and token < 0:
            raise _invalid_input(f"{where}[{i}] is a negative token id.")
        try:
            literal = body.literal("input", *path, i)
            tokens[i] = check_integer(token, f"{where}[{i}]", low=0, literal=literal)
        except ApiError as error:
            raise _in_input(error) from None
    return tuple(tokens)


def _inputs(value: Any, body: Fields) -> tuple[EmbeddingInput, ...]:
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
    checks.array(value, "input", min_items=1, max_items=MAX_INPUTS)
    first = value[0]
    if _is_int(first):
        # One token array.
        return (_tokens(value, "input", body),)
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
            out.append(_tokens(item, where, body, i))
        else:
            raise _wrong_type_in_input(where, "a string, integer or array", item)
    return tuple(out)


@worded
def parse_embeddings_request(
    data: bytes, default_model: str | None = None
) -> EmbeddingsRequest:
    body = parse_body(data, default_model)
    fields = Fields(body, source=Source(data))
    model = fields.string("model")
    if not model:
        raise invalid("you must provide a model parameter", param="model")
    inputs = _inputs(body.get("input"), fields)
    encoding_format = fields.string("encoding_format") or "float"
    if encoding_format not in ENCODING_FORMATS:
        raise invalid(
            f"Invalid value: '{encoding_format}'. Supported values are: 'float' and"
            " 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = fields.integer("dimensions")
    if dimensions is not None and dimensions < 1:
        # Worded as this endpoint words its other ``dimensions`` refusals.
        raise out_of_range(
            "dimensions", f"{dimensions} is lower than the minimum of 1."
        )
    return EmbeddingsRequest(
        model=model,
        inputs=inputs,
        encoding_format=encoding_format,
        dimensions=dimensions,
        user=fields.string("user"),
    )
