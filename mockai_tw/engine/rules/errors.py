"""RuleError, and how the rules word a failed shared check (``mockai_tw.checks``).

The parsers call the shared checks; their public entry points are ``worded``,
so a Problem leaves them as a RuleError naming the key path
(``rules[3].times: must be between 1 and 2147483648``).  Imports no rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mockai_tw.checks import FINITE, INTEGER, RANGE, KeyPathError, Problem, must

P = ParamSpec("P")
T = TypeVar("T")


class RuleError(KeyPathError, ValueError):
    """A rule is wrong; ``str()`` names the key path, like ConfigError."""

    @classmethod
    def of(cls, problem: Problem) -> RuleError:
        """A failed check in the rules' words: a number outside a closed
        range (NaN included) is "between" its ends, as rules always said."""
        low, high = problem.low, problem.high
        if problem.expected in (*RANGE, FINITE) and None not in (low, high):
            if problem.kind == INTEGER:
                return cls(problem.path, f"must be between {low} and {high}")
            return cls(problem.path, f"must be between {low:g} and {high:g}")
        return cls(problem.path, must(problem))


def worded(parse: Callable[P, T]) -> Callable[P, T]:
    """``parse``, raising every failed shared check as a RuleError."""

    @functools.wraps(parse)
    def parse_worded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return parse(*args, **kwargs)
        except Problem as problem:
            raise RuleError.of(problem) from None

    return parse_worded
