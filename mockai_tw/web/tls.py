"""TLS listen endpoints: the files an ``ssl:`` description names, checked at start.

Twisted reads the key and certificate only when the port starts listening, and
a missing file then ends twistd with a traceback. ``check_tls_files`` reads them
first, while the options are validated, so the daemon can stop with one line
naming the parameter and the file (``cannot read privateKey=/x/key.pem: No such
file or directory``).
"""

from __future__ import annotations

from twisted.internet.endpoints import serverFromString

#: ``ssl:`` parameters in Twisted's positional order, after the port.
_SSL_PARAMETERS = (
    "privateKey",
    "certKey",
    "sslmethod",
    "interface",
    "backlog",
    "extraCertChain",
    "dhParameters",
)


class TLSFileError(Exception):
    """One line saying which file of a TLS endpoint is unusable, and why."""


def split_endpoint(description: str) -> tuple[list[str], dict[str, str]]:
    """A description's positional and keyword fields, as Twisted reads them:
    fields are separated by ``:``, the first ``=`` in a field makes it a
    keyword, and a backslash takes the next character literally."""
    fields: list[list[str]] = [[""]]
    chars = iter(description)
    for char in chars:
        if char == "\\":
            fields[-1][-1] += next(chars, "")
        elif char == ":":
            fields.append([""])
        elif char == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += char
    args = [field[0] for field in fields if len(field) == 1]
    kwargs = {field[0]: field[1] for field in fields if len(field) == 2}
    return args, kwargs


def tls_files(description: str) -> list[tuple[str, str]]:
    """The ``(parameter, path)`` files an ``ssl:`` description reads, in the
    order Twisted reads them; empty for any other kind of endpoint."""
    args, kwargs = split_endpoint(description)
    if not args or args[0].lower() != "ssl":
        return []
    given = dict(zip(_SSL_PARAMETERS, args[2:], strict=False)) | kwargs
    # Twisted's defaults: server.pem in the working directory, the
    # certificate in the key's file.
    private_key = given.get("privateKey", "server.pem")
    files = [("privateKey", private_key)]
    if "certKey" in given:
        files.append(("certKey", given["certKey"]))
    files += [
        (name, given[name])
        for name in ("extraCertChain", "dhParameters")
        if name in given
    ]
    return files


def check_tls_files(description: str) -> None:
    """Raise ``TLSFileError`` if an ``ssl:`` description names a file that
    cannot be read, or key and certificate that TLS cannot use."""
    files = tls_files(description)
    if not files:
        return
    for name, path in files:
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as error:
            why = error.strerror or type(error).__name__
            raise TLSFileError(f"cannot read {name}={path}: {why}") from None
    try:
        # Builds the TLS context from the files (a key that does not match
        # its certificate fails here) without listening; no reactor needed.
        serverFromString(None, description)
    except ImportError:
        raise TLSFileError(
            "ssl: endpoints need pyOpenSSL: pip install 'mockai[tls]'"
        ) from None
    except Exception as error:
        named = ", ".join(f"{name}={path}" for name, path in files)
        if "certKey" not in dict(files):
            named += " (no certKey: the certificate is read from privateKey)"
        raise TLSFileError(f"cannot use {named}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """One line for an error; pyOpenSSL's carry a list of OpenSSL reasons."""
    reasons = error.args[0] if len(error.args) == 1 else None
    if isinstance(reasons, list) and all(isinstance(r, tuple) for r in reasons):
        text = "OpenSSL: " + "; ".join(
            ": ".join(str(part) for part in reason if part) for reason in reasons
        )
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())
