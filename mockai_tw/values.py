"""Frozen dataclass values filled in one step, for the hot path.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__``; for the request and plan of every chat request that
cost more than planning a canned reply.  ``built`` fills the instance's
``__dict__`` at once.  It is for plain value classes only: ``defaults``
refuses a class with a ``default_factory`` or ``__post_init__``, whose work
``built`` would skip.

The defaults are kept in a key-sharing (split) dict, an instance's own: an
empty ``__dict__`` updated from a plain dict takes a copy of that dict's
keys and becomes a dict of its own (768 B for the ``ChatPlan`` every open
stream holds), where one filled from a split dict keeps sharing the
class's keys, as ``__init__``'s instances do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def defaults(cls: type) -> dict[str, Any]:
    """``cls``'s field defaults, worked out once for ``built``."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__: build it normally")
    # An instance's own dict, so it shares the class's keys (see above).
    found: dict[str, Any] = object.__new__(cls).__dict__
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has a default_factory")
        if f.default is not dataclasses.MISSING:
            found[f.name] = f.default
    return found


def built(cls: type[T], default: dict[str, Any], **values: Any) -> T:
    """A ``cls`` with ``default`` (``defaults(cls)``) and ``values``; every
    field without a default must be in ``values``."""
    value = object.__new__(cls)
    fields = value.__dict__
    fields.update(default)
    fields.update(values)
    return value
