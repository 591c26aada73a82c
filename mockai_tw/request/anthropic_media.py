"""Anthropic's image and document blocks, and ``cache_control``: read and
checked as the real API does, into what the usage needs.

An image costs ``width * height / 750`` tokens (Anthropic's rule, after the
API's own downscaling to a long edge of 1568 px); the dimensions are read
from the header of base64 data (PNG, JPEG, GIF, WebP), decoding only its
first bytes.  What cannot be measured -- an image by ``url`` or ``file``,
a header the mock cannot read -- costs a fixed ``IMAGE_ESTIMATE``; a PDF
``DOCUMENT_ESTIMATE``.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any

from mockai_tw.errors import ApiError

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Anthropic's figures: images are scaled to a long edge of 1568 px and
# cost at most about 1600 tokens.
LONG_EDGE = 1568
IMAGE_MAX_TOKENS = 1600
# What an image the mock cannot measure costs (the most a large one can).
IMAGE_ESTIMATE = 1600
# What a PDF costs: about one page of text and its image.
DOCUMENT_ESTIMATE = 1500
# How much of base64 data is decoded to find the dimensions.
_HEAD_CHARS = 4 * 16384
TTLS = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4


def problem(path: str, message: str) -> ApiError:
    return ApiError(400, f"{path}: {message}", param=path)


def _tags(names: tuple[str, ...]) -> str:
    quoted = [f"'{n}'" for n in names]
    return (
        ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    )


def _string(block: Mapping[str, Any], key: str, path: str) -> str:
    value = block.get(key)
    if value is None:
        raise problem(f"{path}.{key}", "Field required")
    if not isinstance(value, str):
        raise problem(f"{path}.{key}", "Input should be a valid string")
    return value


def cache_ttl(block: Mapping[str, Any], path: str) -> float | None:
    """A block's ``cache_control`` as its time to live in seconds (None:
    the block is no breakpoint)."""
    value = block.get("cache_control")
    if value is None:
        return None
    where = f"{path}.cache_control"
    if not isinstance(value, dict):
        raise problem(where, "Input should be a valid dictionary")
    kind = value.get("type")
    if kind is None:
        raise problem(f"{where}.type", "Field required")
    if kind != "ephemeral":
        raise problem(f"{where}.type", "Input should be 'ephemeral'")
    for key in value:
        if key not in ("type", "ttl"):
            raise problem(f"{where}.{key}", "Extra inputs are not permitted")
    ttl = value.get("ttl", "5m")
    if ttl not in TTLS:
        raise problem(f"{where}.ttl", "Input should be '5m' or '1h'")
    return TTLS[ttl]


def image_tokens(width: int, height: int) -> int:
    """Anthropic's ``width * height / 750``, after downscaling."""
    if width <= 0 or height <= 0:
        return IMAGE_ESTIMATE
    edge = max(width, height)
    if edge > LONG_EDGE:
        scale = LONG_EDGE / edge
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return min(IMAGE_MAX_TOKENS, math.ceil(width * height / 750))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        # Start-of-frame markers (not DHT, JPG, DAC) hold the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def dimensions(head: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """(media type, (width, height) if readable) from an image's first
    bytes; None: not an image the API takes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(head) >= 24 and head[12:16] == b"IHDR":
            return "image/png", struct.unpack(">II", head[16:24])
        return "image/png", None
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) >= 10:
            return "image/gif", struct.unpack("<HH", head[6:10])
        return "image/gif", None
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg", _jpeg_size(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", _webp_size(head)
    return None


def _head(data: str, path: str) -> bytes:
    """The first bytes of base64 ``data``; a 400 if it is not base64."""
    text = data[:_HEAD_CHARS]
    text = text[: len(text) - len(text) % 4] if len(data) > _HEAD_CHARS else text
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise problem(path, "The image data is not valid base64.") from None


def _source(block: Mapping[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    value = block.get("source")
    where = f"{path}.source"
    if value is None:
        raise problem(where, "Field required")
    if not isinstance(value, dict):
        raise problem(where, "Input should be a valid dictionary")
    kind = value.get("type")
    if kind is None:
        raise problem(f"{where}.type", "Field required")
    if not isinstance(kind, str):
        raise problem(f"{where}.type", "Input should be a valid string")
    return kind, value


def no_tag(where: str, kind: str, tags: tuple[str, ...]) -> ApiError:
    return problem(
        where,
        f"Input tag '{kind}' found using 'type' does not match any of the expected"
        f" tags: {_tags(tags)}",
    )


def image(block: Mapping[str, Any], path: str) -> int:
    """An ``image`` block's source checked; its tokens."""
    kind, source = _source(block, path)
    where = f"{path}.source"
    if kind == "url":
        _string(source, "url", f"{where}.url")
        return IMAGE_ESTIMATE
    if kind == "file":
        _string(source, "file_id", f"{where}.file")
        return IMAGE_ESTIMATE
    if kind != "base64":
        raise no_tag(where, kind, ("base64", "url", "file"))
    at = f"{where}.base64"
    media = _string(source, "media_type", at)
    if media not in IMAGE_TYPES:
        raise problem(f"{at}.media_type", f"Input should be {_tags(IMAGE_TYPES)}")
    data = _string(source, "data", at)
    found = dimensions(_head(data, f"{at}.data"))
    if found is None or found[0] != media:
        raise problem(
            f"{at}.data",
            f"Image does not match the provided media type {media}",
        )
    size = found[1]
    return IMAGE_ESTIMATE if size is None else image_tokens(*size)


def document(block: Mapping[str, Any], path: str) -> tuple[int, str]:
    """A ``document`` block's source checked; (its tokens beyond its text,
    the text the tokenizer counts)."""
    kind, source = _source(block, path)
    where = f"{path}.source"
    if kind == "url":
        _string(source, "url", f"{where}.url")
        return DOCUMENT_ESTIMATE, ""
    if kind == "file":
        _string(source, "file_id", f"{where}.file")
        return DOCUMENT_ESTIMATE, ""
    if kind == "base64":
        at = f"{where}.base64"
        if _string(source, "media_type", at) != "application/pdf":
            raise problem(f"{at}.media_type", "Input should be 'application/pdf'")
        head = _head(_string(source, "data", at), f"{at}.data")
        if not head.startswith(b"%PDF-"):
            raise problem(f"{at}.data", "The PDF specified was not valid.")
        return DOCUMENT_ESTIMATE, ""
    if kind == "text":
        at = f"{where}.text"
        if _string(source, "media_type", at) != "text/plain":
            raise problem(f"{at}.media_type", "Input should be 'text/plain'")
        return 0, _string(source, "data", at)
    if kind == "content":
        content = source.get("content")
        if content is None:
            raise problem(f"{where}.content.content", "Field required")
        if isinstance(content, str):
            return 0, content
        if not isinstance(content, list):
            raise problem(f"{where}.content.content", "Input should be a valid list")
        texts, tokens = [], 0
        for i, item in enumerate(content):
            at = f"{where}.content.content.{i}"
            if not isinstance(item, dict):
                raise problem(at, "Input should be a valid dictionary")
            if item.get("type") == "text":
                texts.append(_string(item, "text", at))
            elif item.get("type") == "image":
                tokens += image(item, at)
            else:
                raise no_tag(f"{at}.type", str(item.get("type")), ("text", "image"))
        return tokens, "\n".join(texts)
    raise no_tag(where, kind, ("base64", "text", "content", "url", "file"))
