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

Where most fields are the same on every value of a hot path, ``template``
fills them once and ``adopted`` takes a copy of it (a split dict's copy
shares its keys too) as the new value's ``__dict__``, which is cheaper
still: no field is set twice.
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


def template(cls: type, **values: Any) -> dict[str, Any]:
    """``defaults(cls)`` and ``values``: every field of a ``cls``, for
    ``adopted`` to take copies of."""
    fields = defaults(cls)
    fields.update(values)
    missing = {f.name for f in dataclasses.fields(cls)} - fields.keys()
    if missing:
        raise TypeError(f"{cls.__name__} template lacks {sorted(missing)}")
    return fields


def adopted(cls: type[T], fields: dict[str, Any]) -> T:
    """A ``cls`` whose ``__dict__`` is ``fields``: a copy of a ``template``
    (so every field is there) that the caller hands over."""
    value: T = object.__new__(cls)
    _set(value, "__dict__", fields)
    return value


_set = object.__setattr__
