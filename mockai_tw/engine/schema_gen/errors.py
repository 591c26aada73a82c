"""The one public error, and the internal failures that say how final they are.

A leaf: knows JSON pointers, nothing about schemas, generation or callers.
"""

from __future__ import annotations

__all__ = ["Failure", "Fatal", "Invalid", "SchemaError", "Stuck", "Unsat"]


def as_fragment(path: str) -> str:
    """Show a JSON pointer as a URI fragment, the way $ref spells it."""
    return "#" + path


class SchemaError(ValueError):
    """The schema is invalid or cannot be satisfied; str() is a one-line reason."""


# Internal failures carry how final they are; ``generate`` re-raises them as a
# plain SchemaError so callers only ever see the public class.
class Failure(SchemaError):
    """A failure at a schema location (a JSON pointer into the root schema)."""

    prefix = "cannot generate"

    def __init__(self, path: str, reason: str) -> None:
        text = f"{self.prefix} at {as_fragment(path)}: {reason}"
        super().__init__(" ".join(text.split()))
        self.path = path
        self.reason = reason


class Invalid(Failure):
    """Not a JSON Schema, or uses something this generator cannot follow."""

    prefix = "invalid schema"


class Unsat(Failure):
    """Provably unsatisfiable: retrying with other random choices cannot help."""

    prefix = "unsatisfiable schema"


class Stuck(Failure):
    """Random choices did not produce a valid value; other choices might."""


class Fatal(Failure):
    """Stop at once (depth or effort limit), without retrying anything."""
