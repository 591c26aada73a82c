"""Identifiers shaped like OpenAI's (``chatcmpl-``, ``req_``...).

They must be unique, not secret: a PRNG seeded from the OS is enough and
costs no system call per request.
"""

from __future__ import annotations

import random
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# Every byte value maps to an id character (a slight, harmless bias).
_TABLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))
_RNG = random.Random()


def new_id(prefix: str, length: int = 29) -> str:
    return prefix + _RNG.randbytes(length).translate(_TABLE).decode()


def request_id() -> str:
    return f"req_{_RNG.getrandbits(128):032x}"


def hex_id(prefix: str, length: int = 48) -> str:
    """Responses API ids: ``resp_``, ``msg_``, ``fc_`` + 48 hex digits."""
    return f"{prefix}{_RNG.getrandbits(length * 4):0{length}x}"
