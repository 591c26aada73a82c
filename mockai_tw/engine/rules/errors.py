"""RuleError, and how the rules word a failed shared check (``mockai_tw.checks``).

The parsers call the shared checks; their public entry points are ``worded``,
so a Problem leaves them as a RuleError naming the key path
(``rules[3].times: must be between 1 and 2147483648``).  Imports no rule.
"""

from __future__ import annotations

from mockai_tw.checks import (
    FINITE,
    INTEGER,
    RANGE,
    KeyPathError,
    Problem,
    must,
    worded_by,
)


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


#: For the parsers' entry points: a failed check leaves them as a RuleError.
worded = worded_by(RuleError.of)
