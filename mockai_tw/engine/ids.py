"""Identifiers shaped like OpenAI's (``chatcmpl-``, ``req_``...).

They must be unique, not secret: a PRNG seeded from the OS is enough and
costs no system call per request.
"""

from __future__ import annotations

import os
import random
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# Every byte value maps to an id character (a slight, harmless bias).
_TABLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))
_RNG = random.Random()


# Random characters and hex digits drawn a few kilobytes at a time and
# handed out in order: one draw per id cost more than the rest of making it.
_POOL_BYTES = 4096


class _Pool:
    __slots__ = ("at", "text")

    def __init__(self) -> None:
        self.text = ""
        self.at = 0


_CHARS = _Pool()
_HEX = _Pool()


def _fresh() -> None:
    """A forked child draws its own ids, not its parent's pooled ones."""
    _RNG.seed()
    _CHARS.text = _HEX.text = ""
    _CHARS.at = _HEX.at = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh)


def new_id(prefix: str, length: int = 29) -> str:
    pool = _CHARS
    at = pool.at
    end = at + length
    if end > len(pool.text):
        pool.text = _RNG.randbytes(max(_POOL_BYTES, length)).translate(_TABLE).decode()
        at, end = 0, length
    pool.at = end
    return prefix + pool.text[at:end]


def request_id() -> str:
    pool = _HEX
    at = pool.at
    end = at + 32
    if end > len(pool.text):
        pool.text = _RNG.randbytes(_POOL_BYTES // 2).hex()
        at, end = 0, 32
    pool.at = end
    return "req_" + pool.text[at:end]


def hex_id(prefix: str, length: int = 48) -> str:
    """Responses API ids: ``resp_``, ``msg_``, ``fc_`` + 48 hex digits."""
    return f"{prefix}{_RNG.getrandbits(length * 4):0{length}x}"
