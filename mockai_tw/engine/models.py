"""The model catalogue: what ``/v1/models`` lists, and who may name a model.

Pure: ``describe`` gives each id the ``created`` and ``owned_by`` OpenAI shows
for it (fixed values, so a listing never changes between calls), and
``check_model`` is the one place ``strict_models`` is enforced, for every
endpoint that takes a ``model``.
"""

from __future__ import annotations

import hashlib

from mockai_tw.config import Config
from mockai_tw.engine.plan import ModelInfo
from mockai_tw.errors import ApiError

# Release timestamps and owners as OpenAI's own listing shows them.
_KNOWN: dict[str, tuple[int, str]] = {
    "gpt-4o": (1715367049, "system"),
    "gpt-4o-mini": (1721172741, "system"),
    "gpt-4.1": (1744316542, "system"),
    "gpt-4.1-mini": (1744318173, "system"),
    "gpt-4.1-nano": (1744321707, "system"),
    "o3-mini": (1737146383, "system"),
    "gpt-4-turbo": (1712361441, "system"),
    "gpt-4": (1687882411, "openai"),
    "gpt-3.5-turbo": (1677610602, "openai"),
    "gpt-3.5-turbo-instruct": (1692901427, "system"),
    "text-embedding-3-small": (1705948997, "system"),
    "text-embedding-3-large": (1705953180, "system"),
    "text-embedding-ada-002": (1671217299, "openai"),
    "omni-moderation-latest": (1731689265, "system"),
    "text-moderation-latest": (1677610602, "openai"),
    "claude-sonnet-4-5": (1759104000, "anthropic"),
    "claude-opus-4-1": (1754352000, "anthropic"),
    "claude-haiku-4-5": (1760486400, "anthropic"),
    "claude-3-5-haiku-latest": (1729555200, "anthropic"),
    "gemini-2.5-flash": (1750118400, "google"),
    "gemini-2.5-pro": (1750118400, "google"),
    "gemini-2.0-flash": (1738713600, "google"),
}

# Ids we have no date for get a stable one in this window (mid-2023 to 2025).
_EPOCH = 1_686_000_000
_SPAN = 60_000_000


def describe(model_id: str) -> ModelInfo:
    """The model object for ``model_id``: the same values on every call."""
    known = _KNOWN.get(model_id)
    if known is not None:
        return ModelInfo(model_id, *known)
    digest = hashlib.blake2b(model_id.encode(), digest_size=8).digest()
    created = _EPOCH + int.from_bytes(digest, "big") % _SPAN
    owner = "system"
    if model_id.startswith("ft:"):
        # ft:<base>:<org>:<suffix>:<id>: a fine-tune belongs to its organisation.
        parts = model_id.split(":")
        if len(parts) > 2 and parts[2]:
            owner = parts[2]
    return ModelInfo(model_id, created, owner)


def catalog(config: Config) -> tuple[ModelInfo, ...]:
    """Every configured model once, in the config's order."""
    return tuple(describe(m) for m in dict.fromkeys(config.models))


def model_not_found(model: str) -> ApiError:
    """The 404 OpenAI sends for a model the key cannot use."""
    return ApiError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
    )


def check_model(config: Config, model: str) -> None:
    """With ``strict_models``, refuse a model the config does not list."""
    if config.strict_models and model not in config.models:
        raise model_not_found(model)
