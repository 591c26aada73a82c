"""The names of the faults a reply can be dealt: a leaf every layer may import.

What each kind does is ``engine/faults.py``'s table; the config and the rules
only need the names to validate against.
"""

from __future__ import annotations

FAULT_KINDS = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "overloaded",
    "stall",
    "drop",
    "cut_reset",
    "cut_close",
    "malformed",
    "trickle",
)
