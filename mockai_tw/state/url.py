"""``state.url``: where the shared-state Redis is, parsed and redacted.

``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS, with an
optional ``?ssl_ca_certs=/path/ca.pem``) and ``unix:///path/to/sock[?db=N]``
(``unix://:password@/path`` too).  A leaf: no Twisted, nothing of ours.
A password never appears in a message, a ``repr`` or ``redacted()``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss", "unix")
_MASK = "***"
# Query parameters each scheme accepts.
_QUERY = {"redis": (), "rediss": ("ssl_ca_certs",), "unix": ("db",)}


@dataclass(frozen=True)
class StateUrl:
    """A parsed ``state.url``.  ``host``/``port`` for TCP, ``path`` for unix."""

    scheme: str
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    #: The URL as given, password masked.
    redacted: str = ""

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def unix(self) -> bool:
        return self.scheme == "unix"


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme, userinfo or None, rest)`` of ``scheme://[userinfo@]rest``.

    The userinfo ends at the *last* ``@`` so a password with an unencoded
    ``@`` or ``/`` still lands in it (and is masked).  A unix URL has
    userinfo only when the text after ``//`` does not start with ``/``.
    """
    scheme, sep, after = url.partition("://")
    if not sep:
        return "", None, url
    if scheme.lower() == "unix" and after.startswith("/"):
        return scheme, None, after
    at = after.rfind("@")
    if at < 0:
        return scheme, None, after
    return scheme, after[:at], after[at + 1 :]


_QUERY_SECRET = re.compile(r"(?i)([?&][^=&#]*pass[^=&#]*=)[^&#]*")


def redacted(url: str) -> str:
    """``url`` with its password (or a bare userinfo, which some clients read
    as a password, or a ``?password=`` parameter) replaced by ``***``.  Safe
    on any string."""
    url = _QUERY_SECRET.sub(rf"\1{_MASK}", url)
    scheme, userinfo, rest = _split_userinfo(url)
    if userinfo is None:
        if "://" not in url and "@" in url:
            # Not a URL at all: whatever precedes an @ may be a secret.
            return f"{_MASK}@{url.rpartition('@')[2]}"
        return url
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{_MASK}" if colon else _MASK
    return f"{scheme}://{shown}@{rest}"


def _int(text: str, what: str, shown: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(
            f"state.url {shown}: {what} must be an integer from {low} to {high}"
        )
    return int(text)


def parse_url(url: str) -> StateUrl:
    """The ``StateUrl`` of ``url``, or ``ValueError`` naming it (redacted)."""
    if not isinstance(url, str):
        raise ValueError("state.url must be a string")
    shown = redacted(url)
    scheme, userinfo, rest = _split_userinfo(url.strip())
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"state.url {shown}: the scheme must be redis://, rediss:// or unix://"
        )
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        if not colon:
            raise ValueError(
                f"state.url {shown}: give the password as :PASSWORD@ or"
                " USER:PASSWORD@ (a user name alone is ambiguous)"
            )
        username = unquote(user) or None
        password = unquote(secret)
    base, _, query_text = rest.partition("?")
    if "#" in query_text or "#" in base:
        raise ValueError(f"state.url {shown}: no #fragment")
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_text, keep_blank_values=True):
        if "pass" in name.lower():
            raise ValueError(
                f"state.url {shown}: put the password in the URL"
                " (redis://:PASSWORD@host, unix://:PASSWORD@/path)"
            )
        if name not in _QUERY[scheme]:
            allowed = ", ".join(_QUERY[scheme]) or "none"
            raise ValueError(
                f"state.url {shown}: unknown parameter {name!r} (allowed: {allowed})"
            )
        query[name] = value
    if scheme == "unix":
        path = unquote(base)
        if not path.startswith("/") or path == "/":
            raise ValueError(
                f"state.url {shown}: a unix URL is unix:///absolute/path/to.sock"
            )
        db = _int(query.get("db", "0"), "db", shown, 0, 2**31 - 1)
        return StateUrl(
            scheme, port=0, path=path, db=db, username=username, password=password,
            redacted=shown,
        )  # fmt: skip
    try:
        parts = urlsplit("//" + base)
        host = parts.hostname or ""
        port_text = parts.netloc.rpartition("]")[2].rpartition(":")
    except ValueError:
        raise ValueError(f"state.url {shown}: the host is not valid") from None
    if not host:
        raise ValueError(f"state.url {shown}: a host is required")
    if host.startswith("[") or (":" in host and not _ipv6(host)):
        raise ValueError(f"state.url {shown}: the host is not valid")
    port = DEFAULT_PORT
    if port_text[1]:
        port = _int(port_text[2], "the port", shown, 1, 65535)
    path = parts.path
    db = 0
    if path not in ("", "/"):
        db = _int(path[1:], "the db (the path)", shown, 0, 2**31 - 1)
    ca = query.get("ssl_ca_certs") or None
    return StateUrl(
        scheme, host=host, port=port, db=db, username=username, password=password,
        ssl_ca_certs=ca, redacted=shown,
    )  # fmt: skip


def _ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True
