"""Identifiers shaped like OpenAI's (``chatcmpl-``, ``req_``...)."""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 29) -> str:
    raw = os.urandom(length)
    return prefix + "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw)


def request_id() -> str:
    return "req_" + os.urandom(16).hex()
