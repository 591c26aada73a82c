"""``POST /v1/completions`` (legacy): a frozen CompletionRequest, or a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import invalid
from mockai_tw.request.chat import _stop as parse_stop
from mockai_tw.request.chat import logit_bias
from mockai_tw.request.common import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    Fields,
    Source,
    check_integer,
    missing,
    parse_body,
    worded,
    wrong_type,
)

# OpenAI's default for the legacy endpoint (chat has none): short replies get cut.
DEFAULT_MAX_TOKENS = 16
# A bound on prompts per request, so one body cannot ask for millions of choices.
MAX_PROMPTS = 2048

_PROMPT_TYPES = (
    "one of a string, array of strings, array of integers, or array of arrays"
    " of integers"
)


@dataclass(frozen=True)
class Prompt:
    """One prompt: its text (for ``echo``) and its size in tokens, if given as ids."""

    text: str
    # The token ids when the prompt came as a token array; its text is then "".
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompts: tuple[Prompt, ...]
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    best_of: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: tuple[str, ...] = ()
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    # The whole parsed body, for rules and the journal.
    body: dict[str, Any] | None = None

    @property
    def candidates(self) -> int:
        """Completions generated per prompt (``best_of`` of them; ``n`` returned)."""
        return max(self.n, self.best_of or 0)


def _token_ids(
    value: list[Any], param: str, body: Fields, *where: str | int
) -> tuple[int, ...]:
    """A token array, ``where`` in ``body`` (for literals orjson cannot hold)."""
    tokens = list(checks.array(value, param, min_items=1))
    for i, token in enumerate(value):
        if type(token) is not int or not 0 <= token <= INT32_MAX:
            literal = body.literal(*where, i)
            tokens[i] = check_integer(token, f"{param}[{i}]", low=0, literal=literal)
    return tuple(tokens)


def _prompts(value: Any, fields: Fields) -> tuple[Prompt, ...]:
    """The four shapes OpenAI accepts, each prompt on its own."""
    if value is None:
        raise missing("prompt")
    if isinstance(value, str):
        return (Prompt(value),)
    if not isinstance(value, list):
        raise wrong_type("prompt", _PROMPT_TYPES, value)
    checks.array(value, "prompt", min_items=1)
    first = value[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return (Prompt("", _token_ids(value, "prompt", fields, "prompt")),)
    checks.array(value, "prompt", max_items=MAX_PROMPTS)
    if isinstance(first, str):
        return tuple(
            Prompt(checks.string(item, f"prompt[{i}]")) for i, item in enumerate(value)
        )
    if isinstance(first, list):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, list):
                raise wrong_type(f"prompt[{i}]", "an array of integers", item)
            ids = _token_ids(item, f"prompt[{i}]", fields, "prompt", i)
            out.append(Prompt("", ids))
        return tuple(out)
    raise wrong_type("prompt", _PROMPT_TYPES, value)


@worded
def parse_completion_request(
    data: bytes, default_model: str | None = None
) -> CompletionRequest:
    body = parse_body(data, default_model)
    fields = Fields(body, source=Source(data))
    model = fields.string("model")
    if not model:
        raise invalid("you must provide a model parameter", param="model")
    prompts = _prompts(body.get("prompt"), fields)
    stream = fields.boolean("stream")
    options = fields.obj("stream_options")
    if options is not None and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    include_usage = Fields(options or {}, "stream_options.").boolean("include_usage")
    n = fields.integer("n", low=1, high=128) or 1
    best_of = fields.integer("best_of", low=0, high=20)
    if best_of is not None:
        if best_of < n:
            raise invalid(
                f"Invalid 'best_of': it must be greater than or equal to 'n'"
                f" (got best_of={best_of}, n={n}).",
                param="best_of",
                code="invalid_value",
            )
        if stream and best_of > 1:
            raise invalid(
                "Invalid 'best_of': results cannot be streamed when 'best_of' is"
                " greater than 1.",
                param="best_of",
                code="invalid_value",
            )
    max_tokens = fields.integer("max_tokens", low=0)
    for key, low, high in (
        ("presence_penalty", -2, 2),
        ("frequency_penalty", -2, 2),
    ):
        fields.number(key, low=low, high=high)
    logit_bias(fields)
    return CompletionRequest(
        model=model,
        prompts=prompts,
        stream=stream,
        include_usage=include_usage,
        n=n,
        best_of=best_of,
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        stop=parse_stop(body.get("stop")),
        echo=fields.boolean("echo"),
        suffix=fields.string("suffix"),
        logprobs=fields.integer("logprobs", low=0, high=5),
        seed=fields.integer("seed", low=INT64_MIN, high=INT64_MAX),
        temperature=fields.number("temperature", low=0, high=2),
        top_p=fields.number("top_p", low=0, high=1),
        user=fields.string("user"),
        body=body,
    )
