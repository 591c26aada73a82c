"""The value checks the config schema, the rules and the request models share.

Each check takes a value and its key path and returns the value, typed, or
raises one ``Problem``: what was expected, what came, which bound.  No check
words anything: each domain renders a Problem its own way -- ``must()`` here
for the config and the rules (``path: must be ..., got ...``, a secret shown
only by its kind), OpenAI's sentences and codes in ``request/common.py``.
A leaf: it imports nothing of ours, so every layer can use it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# What a value must be: a kind ...
STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
MAPPING = "mapping"
LIST = "list"
# ... or, for a value of the right kind, a condition on it.
AT_LEAST = ">="
ABOVE = ">"
AT_MOST = "<="
RANGE = (AT_LEAST, ABOVE, AT_MOST)
NONEMPTY = "non-empty"
FINITE = "finite"
ONE_OF = "one of"
KNOWN_KEY = "a known key"
STRING_KEYS = "string keys"
MIN_ITEMS = "at least"
MAX_ITEMS = "at most"
#: The largest float: a number beyond it (either way) is not finite.
_LARGEST = sys.float_info.max
CONDITIONS = frozenset(
    (*RANGE, NONEMPTY, FINITE, ONE_OF, KNOWN_KEY, STRING_KEYS, MIN_ITEMS, MAX_ITEMS)
)


@dataclass(frozen=True)
class Problem(Exception):
    """One value that failed a check, before any domain has worded it.

    ``expected`` is a kind (``INTEGER``), a condition on a value of the
    right kind (``AT_LEAST``, ``ONE_OF``, ...), or a domain's own phrase for
    a kind no check knows ("a non-empty list of answers").  ``bound`` is the
    condition's operand (the limit, the count, the choices), ``kind`` what
    the value was checked as, ``low`` and ``high`` a range check's both ends
    (for a domain that says "between").
    """

    path: str
    expected: str
    got: Any = None
    bound: Any = None
    kind: str = ""
    low: Any = None
    high: Any = None

    @property
    def wrong_type(self) -> bool:
        """Whether the value was not of the kind expected at all."""
        return self.expected not in CONDITIONS

    def __str__(self) -> str:
        return f"{self.path}: {must(self)}" if self.path else must(self)


class KeyPathError(Exception):
    """A value at a key path is wrong: ``str()`` is the one line to print.

    The base of ``ConfigError`` and ``RuleError``: both say ``path: message``,
    and word a Problem with ``must()``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def worded_by(
    render: Callable[[Problem], Exception],
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A decorator for a domain's entry points: a Problem raised below one
    leaves it as ``render`` words it, so the code below calls the checks as
    they are and a caller sees only the domain's own exception."""

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def worded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return function(*args, **kwargs)
            except Problem as problem:
                raise render(problem) from None

        return worded

    return decorate


def key_path(path: str, key: Any) -> str:
    """The path of ``key`` in the mapping at ``path`` (the top one has none)."""
    return f"{path}.{key}" if path else str(key)


# --- the checks -----------------------------------------------------------


def string(
    value: Any, path: str, *, nonempty: bool = False, strip: bool = False
) -> str:
    """A string; ``nonempty``: not "" (``strip``: nor only whitespace)."""
    if not isinstance(value, str):
        raise Problem(path, STRING, value)
    if nonempty and not (value.strip() if strip else value):
        raise Problem(path, NONEMPTY, value, kind=STRING)
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Problem(path, BOOLEAN, value)
    return value


def integer(
    value: Any,
    path: str,
    *,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
    whole_floats: bool = False,
) -> int:
    """An int within the bounds; a bool is not one.

    ``whole_floats``: a whole number written as a float (``16.0``) is taken
    when it is within the bounds and any other float is not an integer, as
    OpenAI reads JSON numbers.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if not (whole_floats and isinstance(value, float) and value.is_integer()):
            raise Problem(path, INTEGER, value)
        if not _within(value, ge, gt, le):  # then it is no integer at all
            raise Problem(path, INTEGER, value)
        return int(value)
    if not _within(value, ge, gt, le):
        raise _range_problem(value, path, INTEGER, ge, gt, le)
    return value


def number(
    value: Any,
    path: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    finite: bool = True,
) -> float:
    """An int or a float within the bounds, as a float; a bool is not one.

    ``finite``: NaN, the infinities and an int past the largest float are
    refused before any bound (a NaN breaks every bound anyway, the others
    only the one on their side).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Problem(path, NUMBER, value)
    # A NaN compares false; an int is compared exactly (no overflow).
    if finite and not -_LARGEST <= value <= _LARGEST:
        low = ge if ge is not None else gt
        raise Problem(path, FINITE, value, kind=NUMBER, low=low, high=le)
    if not _within(value, ge, gt, le):
        raise _range_problem(value, path, NUMBER, ge, gt, le)
    return float(value)


def mapping(
    value: Any, path: str, *, string_keys: bool = False, max_items: int | None = None
) -> dict[Any, Any]:
    """A mapping (a dict, as parsed); ``string_keys``: every key a string."""
    if not isinstance(value, dict):
        raise Problem(path, MAPPING, value)
    if string_keys:
        for key in value:
            string_key(key, path)
    if max_items is not None:
        _count(value, path, MAPPING, 0, max_items)
    return value


def string_key(key: Any, path: str) -> str:
    """A mapping's key, which must be a string (``path``: the mapping's or
    the key's own, as the domain names it)."""
    if not isinstance(key, str):
        raise Problem(path, STRING_KEYS, key)
    return key


def known_key(key: Any, path: str, known: Sequence[str]) -> str:
    """A key that is one of ``known`` (in the order a message lists them)."""
    if key not in known:
        raise Problem(path, KNOWN_KEY, key, tuple(known))
    return str(key)


def known_keys(value: Mapping[Any, Any], path: str, known: Sequence[str]) -> None:
    """Every key of the mapping at ``path`` is one of ``known``."""
    for key in value:
        known_key(key, key_path(path, key), known)


def array(
    value: Any, path: str, *, min_items: int = 0, max_items: int | None = None
) -> list[Any]:
    """A list (as parsed) of ``min_items`` to ``max_items`` items."""
    if not isinstance(value, list):
        raise Problem(path, LIST, value)
    if min_items or max_items is not None:
        _count(value, path, LIST, min_items, max_items)
    return value


def one_of(value: Any, path: str, choices: Sequence[str]) -> str:
    """One of ``choices``; the value may be of any kind (it is compared)."""
    if value not in choices:
        raise Problem(path, ONE_OF, value, tuple(choices))
    return str(value)


def _within(value: float, ge: float | None, gt: float | None, le: float | None) -> bool:
    """Whether ``value`` keeps every bound given (a NaN keeps none)."""
    return (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
    )


def _range_problem(
    value: float,
    path: str,
    kind: str,
    ge: float | None,
    gt: float | None,
    le: float | None,
) -> Problem:
    """The first bound ``value`` breaks, and the range it was checked in."""
    bound: float | None
    if ge is not None and not value >= ge:
        condition, bound = AT_LEAST, ge
    elif gt is not None and not value > gt:
        condition, bound = ABOVE, gt
    else:
        condition, bound = AT_MOST, le
    low = ge if ge is not None else gt
    return Problem(path, condition, value, bound, kind, low, le)


def _count(value: Sized, path: str, kind: str, least: int, most: int | None) -> None:
    if len(value) < least:
        raise Problem(path, MIN_ITEMS, value, least, kind)
    if most is not None and len(value) > most:
        raise Problem(path, MAX_ITEMS, value, most, kind)


# --- the config's and the rules' words -------------------------------------

#: How ``must()`` names a kind; another ``expected`` is a phrase, named as is.
_NAMES = {
    STRING: "a string",
    INTEGER: "an integer",
    NUMBER: "a number",
    BOOLEAN: "a boolean (true/false)",
    MAPPING: "a mapping",
    LIST: "a list",
}
_MUST = {
    AT_LEAST: "must be >= {bound:g}",
    ABOVE: "must be > {bound:g}",
    AT_MOST: "must be <= {bound:g}",
    NONEMPTY: "must not be empty",
    FINITE: "must be a finite number",
    ONE_OF: "must be one of {choices}; got {value}",
    KNOWN_KEY: "unknown key (known keys: {choices})",
    STRING_KEYS: "keys must be strings, got {shown}",
    MIN_ITEMS: "must have at least {bound} {items}",
    MAX_ITEMS: "must have at most {bound} {items}",
}
_WRONG_TYPE = "must be {expected}, got {shown}"


def must(problem: Problem, *, secret: bool = False) -> str:
    """A Problem as the config and the rules word it: ``must be X, got Y``.

    ``secret``: the value is a secret, so only its kind may be named.
    """
    got, bound = problem.got, problem.bound
    choices = ", ".join(bound) if problem.expected in (ONE_OF, KNOWN_KEY) else ""
    return _MUST.get(problem.expected, _WRONG_TYPE).format(
        expected=_NAMES.get(problem.expected, problem.expected),
        shown=kind_of(got) if secret else describe(got),
        value="something else" if secret else repr(got),
        bound=bound,
        choices=choices,
        items="item" if bound == 1 else "items",
    )


def describe(value: Any) -> str:
    """A value as an error message names it ("the string 'x'")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def kind_of(value: Any) -> str:
    """What a value is, without showing it ("a number"): for secrets."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__
