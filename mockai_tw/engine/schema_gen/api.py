"""The entry points: check a schema, generate an instance, remember verdicts.

What callers (chat, rules) use, re-exported by the package: a schema in, an
instance or a SchemaError out, whatever failed inside. Knows no request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from random import Random
from typing import Any

from mockai_tw.engine.schema_gen.depth import check_depth
from mockai_tw.engine.schema_gen.document import Document
from mockai_tw.engine.schema_gen.errors import Failure, Invalid, SchemaError
from mockai_tw.engine.schema_gen.generator import Generator

__all__ = ["SchemaError", "check_schema", "generate"]

# Within the depth bound, only a long $ref chain can still exhaust the stack.
_CHECK_TOO_DEEP = "the schema nests too deeply to check (a long $ref chain?)"


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless ``schema`` is a valid, satisfiable 2020-12 schema.

    Checks that it nests at most ``MAX_SCHEMA_DEPTH`` levels, the metaschema
    (patterns must compile), that every ``$ref`` is local and resolves, and the
    contradictions that are cheap to see (bounds that cross, an empty
    ``enum``, a ``const`` of the wrong type, a required property that
    ``additionalProperties: false`` forbids, a ``false`` root).
    """
    _checked(schema)


def generate(schema: Mapping[str, Any], rng: Random, *, name: str = "") -> Any:
    """Return an instance valid against ``schema``, drawn from ``rng``.

    ``name`` (for instance the ``json_schema.name`` of the request) hints the
    root value's content the way a property name does. Raises SchemaError if
    the schema is invalid or no instance could be found.
    """
    root = _checked(schema)
    try:
        return Generator(root, rng).run(name)
    except Failure as exc:
        raise SchemaError(str(exc)) from None
    except BaseException as exc:
        if not _overflowed(exc):
            raise
        raise SchemaError("cannot generate at #: the schema nests too deeply") from None


# The metaschema check costs more than generating; clients send the same
# schema with every request, so remember the verdicts on recent ones.
_VERDICTS: dict[str, str] = {}  # canonical JSON -> "" (fine) or the error
_VERDICTS_MAX = 256


def _checked(schema: Any) -> Document:
    """The checked schema, ready to generate from; raises SchemaError."""
    check_depth(schema)  # first: everything below recurses
    try:
        key: str | None = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        key = None
    verdict = _VERDICTS.get(key) if key is not None else None
    if verdict is None:
        try:
            Document(schema).check()
        except Failure as exc:
            verdict = str(exc)
        except BaseException as exc:
            if not _overflowed(exc):
                raise
            # Not remembered: how deep the caller's own stack was decided it.
            raise SchemaError(str(Invalid("", _CHECK_TOO_DEEP))) from None
        else:
            verdict = ""
        if key is not None:
            while len(_VERDICTS) >= _VERDICTS_MAX:
                _VERDICTS.pop(next(iter(_VERDICTS)), None)
            _VERDICTS[key] = verdict
    if verdict:
        raise SchemaError(verdict)
    # A fresh instance: its memos must not depend on whether check() ran, or
    # the same seed could choose differently on a cache hit.
    root = Document(schema)
    root.prepare()
    return root


def _overflowed(exc: BaseException) -> bool:
    """Whether ``exc`` is the stack running out, however it surfaced.

    jsonschema's ``referencing`` keeps schemas in Rust maps (``rpds``); a
    RecursionError inside the ``__eq__`` they call comes out as pyo3's
    PanicException, a BaseException that no ``import`` names, hence the name.
    """
    if isinstance(exc, RecursionError):
        return True
    return type(exc).__name__ == "PanicException" and "RecursionError" in str(exc)
