"""Strings that match a regular expression: a generator for a practical subset.

Parses literals, classes, quantifiers, groups and alternation into a small
tree that makes matches of a chosen length; outside the subset it guesses and
checks with ``re``. Knows patterns and lengths, not schemas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from random import Random
from typing import Any

from mockai_tw.engine.schema_gen.errors import Stuck


class _RegexUnsupported(Exception):
    """The pattern uses syntax outside the subset: fall back to guessing."""


_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
_ANY_RANGES = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x20, 0x20)]
_DIGIT = [(0x30, 0x39)]
_WORD = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x5F, 0x5F)]
_SPACE = [(0x20, 0x20)]  # generating tabs/newlines helps no one


class _RNode:
    """A regex AST node; ``lo``/``hi`` bound the length of what it matches."""

    lo: int = 0
    hi: int | None = 0

    def gen(self, rng: Random, target: int) -> str:
        return ""


class _RChars(_RNode):
    """One character from a set (a literal, a class, ``.``, ``\\d``...)."""

    def __init__(self, ranges: list[tuple[int, int]], negated: bool = False) -> None:
        self.lo = self.hi = 1
        if negated:
            pool = [
                c for c in _PRINTABLE if not any(a <= ord(c) <= b for a, b in ranges)
            ]
            if not pool:
                pool = [
                    chr(c)
                    for c in range(0xC0, 0x250)
                    if not any(a <= c <= b for a, b in ranges)
                ]
            if not pool:
                raise _RegexUnsupported("an empty negated class")
            self.ranges = [(ord(c), ord(c)) for c in pool]
        else:
            self.ranges = ranges
        self.weights = [b - a + 1 for a, b in self.ranges]

    def gen(self, rng: Random, target: int) -> str:
        a, b = rng.choices(self.ranges, self.weights)[0]
        return chr(rng.randint(a, b))


class _RSeq(_RNode):
    """Concatenation: the target length is shared among the items."""

    def __init__(self, items: list[_RNode]) -> None:
        self.items = items
        self.lo = sum(i.lo for i in items)
        his = [i.hi for i in items]
        self.hi = None if any(h is None for h in his) else sum(h or 0 for h in his)

    def gen(self, rng: Random, target: int) -> str:
        return "".join(
            item.gen(rng, size)
            for item, size in zip(
                self.items, _spread(self.items, target, rng), strict=True
            )
        )


class _RAlt(_RNode):
    """Alternation: an option that can reach the target length."""

    def __init__(self, options: list[_RNode]) -> None:
        self.options = options
        self.lo = min(o.lo for o in options)
        his = [o.hi for o in options]
        self.hi = None if any(h is None for h in his) else max(h or 0 for h in his)

    def gen(self, rng: Random, target: int) -> str:
        fit = [
            o
            for o in self.options
            if o.lo <= target and (o.hi is None or target <= o.hi)
        ]
        if not fit:
            best = min(abs(o.lo - target) for o in self.options)
            fit = [o for o in self.options if abs(o.lo - target) == best]
        return rng.choice(fit).gen(rng, target)


class _RRepeat(_RNode):
    """A quantifier: a count that can reach the target, then the copies."""

    def __init__(self, node: _RNode, least: int, most: int | None) -> None:
        self.node, self.least, self.most = node, least, most
        self.lo = least * node.lo
        if node.hi == 0:
            self.hi = 0
        elif most is None or node.hi is None:
            self.hi = None
        else:
            self.hi = most * node.hi

    def gen(self, rng: Random, target: int) -> str:
        node = self.node
        top = self.most if self.most is not None else max(self.least, target) + 1
        counts = [
            c
            for c in range(self.least, min(top, self.least + 400) + 1)
            if c * node.lo <= target and (node.hi is None or target <= c * node.hi)
        ]
        if counts:
            count = rng.choice(counts)
        elif node.lo and target < self.least * node.lo:
            count = self.least
        else:
            count = min(top, self.least + 400)
        copies = [node] * count
        return "".join(node.gen(rng, size) for size in _spread(copies, target, rng))


def _spread(items: Sequence[_RNode], target: int, rng: Random) -> list[int]:
    """Share a target length among nodes, each within its own length bounds."""
    sizes = [i.lo for i in items]
    left = target - sum(sizes)
    open_ = [k for k, i in enumerate(items) if i.hi is None or i.hi > i.lo]
    while left > 0 and open_:
        k = rng.choice(open_)
        item = items[k]
        room = left if item.hi is None else min(left, item.hi - sizes[k])
        give = rng.randint(1, room)
        sizes[k] += give
        left -= give
        if item.hi is not None and sizes[k] >= item.hi:
            open_.remove(k)
    return sizes


class _RegexParser:
    """Literals, classes, ``. \\d \\w \\s``, quantifiers, groups, ``|``, ``^ $``."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def parse(self) -> _RNode:
        node = self._alt()
        if self.i != len(self.p):
            raise _RegexUnsupported(f"unexpected {self.p[self.i]!r}")
        return node

    def _peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def _alt(self) -> _RNode:
        options = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            options.append(self._seq())
        return options[0] if len(options) == 1 else _RAlt(options)

    def _seq(self) -> _RNode:
        items: list[_RNode] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return items[0] if len(items) == 1 else _RSeq(items)

    def _atom(self) -> _RNode:
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            zero_width = False
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith(("?=", "?!"), self.i):
                self.i += 2
                zero_width = True
            elif self.p.startswith(("?<=", "?<!"), self.i):
                self.i += 3
                zero_width = True
            elif self.p.startswith(("?P<", "?<"), self.i):
                self.i = self.p.index(">", self.i) + 1
            elif self._peek() == "?":
                raise _RegexUnsupported("group flags")
            inner = self._alt()
            if self._peek() != ")":
                raise _RegexUnsupported("unbalanced group")
            self.i += 1
            return _RNode() if zero_width else inner
        if c == "[":
            return self._class()
        if c == ".":
            return _RChars(_ANY_RANGES)
        if c in "^$":
            return _RNode()
        if c == "\\":
            return self._escape(in_class=False)
        if c in "*+?":
            raise _RegexUnsupported("nothing to repeat")
        return _RChars([(ord(c), ord(c))])

    def _escape(self, in_class: bool) -> _RChars | _RNode:
        if self.i >= len(self.p):
            raise _RegexUnsupported("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        sets = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
        if c in sets:
            return _RChars(sets[c])
        if c.lower() in sets:
            return _RChars(sets[c.lower()], negated=True)
        if (c in "bB" and not in_class) or c in "AZz":
            return _RNode()  # zero-width: verified afterwards
        simple = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
        if in_class and c == "b":
            return _RChars([(8, 8)])
        if c in simple:
            code = ord(simple[c])
        elif c in "xu":
            width = 2 if c == "x" else 4
            digits = self.p[self.i : self.i + width]
            if len(digits) != width or not all(
                d in "0123456789abcdefABCDEF" for d in digits
            ):
                raise _RegexUnsupported("bad hex escape")
            self.i += width
            code = int(digits, 16)
        elif c.isdigit() or c.isalpha():
            raise _RegexUnsupported(f"escape \\{c}")
        else:
            code = ord(c)
        return _RChars([(code, code)])

    def _class(self) -> _RChars:
        negated = self._peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise _RegexUnsupported("unterminated class")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == "\\":
                letter = self._peek()
                node = self._escape(in_class=True)
                if letter in ("D", "W", "S") or not isinstance(node, _RChars):
                    raise _RegexUnsupported(f"\\{letter} inside a class")
                if letter in ("d", "w", "s"):
                    ranges.extend(node.ranges)
                    continue
                low = node.ranges[0][0]
            else:
                low = ord(c)
            if self._peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                d = self.p[self.i]
                self.i += 1
                if d == "\\":
                    node = self._escape(in_class=True)
                    if not isinstance(node, _RChars) or len(node.ranges) != 1:
                        raise _RegexUnsupported("bad range")
                    high = node.ranges[0][0]
                else:
                    high = ord(d)
                if high < low:
                    raise _RegexUnsupported("bad range")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        return _RChars(ranges, negated)

    def _quantified(self, node: _RNode) -> _RNode:
        while True:
            c = self._peek()
            if c in ("*", "+", "?"):
                self.i += 1
                least, most = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{":
                match = re.match(r"\{(\d*)(,?)(\d*)\}", self.p[self.i :])
                if not match or not (match.group(1) or match.group(3)):
                    return node  # a literal brace, as Python reads it
                self.i += match.end()
                least = int(match.group(1) or 0)
                if match.group(2):
                    most = int(match.group(3)) if match.group(3) else None
                else:
                    most = least
                if most is not None and most < least:
                    raise _RegexUnsupported("bad repeat")
            else:
                return node
            if self._peek() in ("?", "+"):
                self.i += 1  # lazy or possessive: the same strings match
            node = _RRepeat(node, least, most)


@lru_cache(maxsize=256)
def _parse_regex(pattern: str) -> _RNode | None:
    """The pattern's AST, or None when it is outside the subset (cached)."""
    # Leading inline flags that keep generated matches matching (not x: verbose).
    flags = re.match(r"\(\?[aimsu]+\)", pattern)
    if flags:
        pattern = pattern[flags.end() :]
    try:
        return _RegexParser(pattern).parse()
    except (_RegexUnsupported, ValueError, IndexError):
        return None


def pattern_string(
    patterns: list[tuple[str, str]],
    lo: int,
    hi: int | None,
    rng: Random,
    fits: Any,
) -> str:
    """A string that ``re.search``-matches every pattern, within the lengths."""

    def ok(text: str) -> bool:
        if fits is not None:
            return bool(fits(text))
        return (
            lo <= len(text)
            and (hi is None or len(text) <= hi)
            and all(re.search(p, text) for p, _ in patterns)
        )

    pattern, path = patterns[0]
    node = _parse_regex(pattern)
    if node is not None:
        for attempt in range(10):
            t_lo = max(lo, node.lo)
            t_hi = (
                node.hi if hi is None else hi if node.hi is None else min(hi, node.hi)
            )
            if t_hi is None or t_lo <= t_hi:
                spread = 0 if attempt >= 6 else 8
                top = t_lo + spread if t_hi is None else min(t_hi, t_lo + spread)
                target = rng.randint(t_lo, top)
            else:
                target = node.lo
            core = node.gen(rng, target)
            pad = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=lo - len(core)))
            for text in (core, core + pad, pad + core):
                if ok(text):
                    return text
    nodes = [_parse_regex(p) for p, _ in patterns[1:]]
    if node is not None and len(patterns) > 1 and all(nodes):
        # Several unanchored patterns: a match of each, side by side.
        every = [node, *(n for n in nodes if n is not None)]
        for _ in range(10):
            cores = []
            for each in every:
                top = each.lo + 4 if each.hi is None else min(each.hi, each.lo + 4)
                cores.append(each.gen(rng, rng.randint(each.lo, top)))
            for text in ("".join(cores), "".join(reversed(cores))):
                if ok(text):
                    return text
    literal = re.sub(r"\\(.)|[\^$.*+?()\[\]{}|]", r"\1", pattern)
    guesses = ["", literal, "a" * lo, "0" * lo, "x" * max(lo, 1)]
    guesses += [
        "".join(rng.choices(_PRINTABLE, k=max(lo, 1) + i % 5)) for i in range(40)
    ]
    for text in guesses:
        if ok(text):
            return text
    raise Stuck(path, f"cannot generate a string matching pattern {pattern!r}")
