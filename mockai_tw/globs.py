"""Per-model settings: one lookup for every table keyed by model name or glob.

A leaf: timing, faults and anything else keyed by model read their entry
the same way (the exact name first, then the first glob that matches, in
the order the config gives them).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def for_model(table: Mapping[str, T], model: str) -> T | None:
    """The entry for ``model``: exact, else the first matching glob, else None."""
    if not table:
        return None
    found = table.get(model)
    if found is not None:
        return found
    return next((v for k, v in table.items() if fnmatch.fnmatchcase(model, k)), None)
