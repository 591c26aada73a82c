"""Exact arithmetic for bounds and ``multipleOf``, the way jsonschema checks it.

Plain numbers and integer ranges: knows nothing about schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from random import Random


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division (exact for big ints, unlike math.ceil(a / b))."""
    return -(-a // b)


def multiple_ok(value: int | float, divisor: int | float) -> bool:
    """``multipleOf`` exactly as jsonschema checks it (float division for floats)."""
    if isinstance(divisor, float):
        quotient = value / divisor
        try:
            return int(quotient) == quotient
        except (OverflowError, ValueError):
            return Fraction(value) % Fraction(divisor) == 0
    return bool(value % divisor == 0)


def exact_decimal(value: int | float) -> Fraction:
    """The decimal a JSON number was written as (0.1 means 1/10)."""
    return Fraction(Decimal(repr(value)))


def pick_range(
    lo: int | None, hi: int | None, window: tuple[int, int]
) -> tuple[int, int]:
    """A small, plausible sub-range of [lo, hi], preferring ``window``."""
    w_lo, w_hi = window
    a = w_lo if lo is None else max(lo, w_lo)
    b = w_hi if hi is None else min(hi, w_hi)
    if a <= b:
        return a, b
    width = max(w_hi - w_lo, 10)
    if lo is not None and lo > w_hi:
        return lo, lo + width if hi is None else min(hi, lo + width)
    assert hi is not None
    return (hi - width if lo is None else max(lo, hi - width)), hi


def candidates(a: int, b: int, rng: Random, limit: int = 40) -> Iterator[int]:
    """A random start in [a, b], then its neighbours: for retrying multiples."""
    start = rng.randint(a, b)
    yield start
    for offset in range(1, limit):
        if start + offset <= b:
            yield start + offset
        if start - offset >= a:
            yield start - offset
