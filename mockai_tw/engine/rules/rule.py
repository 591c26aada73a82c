"""A rule: conditions, an answer and its limits, parsed from one ``rules:`` entry.

``parse_rule`` checks a rule as a whole (names, captures against templates,
``times``/``ttl_s``, delivery, faults); ``parse_rules`` the config's list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mockai_tw import checks
from mockai_tw.engine.rules.answers import (
    Answer,
    AnswerParser,
    ErrorAnswer,
    SequenceAnswer,
)
from mockai_tw.engine.rules.conditions import Conditions, parse_conditions
from mockai_tw.engine.rules.context import ENDPOINTS, NO_HEADERS, TEXT_ENDPOINTS
from mockai_tw.engine.rules.errors import RuleError, worded
from mockai_tw.engine.rules.templates import TEMPLATE_FIELDS
from mockai_tw.fault_kinds import FAULT_KINDS

CHUNKINGS = ("char", "word", "token")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")


@dataclass(frozen=True, eq=False)
class Rule:
    name: str | None
    match: Conditions
    answer: Answer
    # Expire after this many matches, or this many seconds after being added.
    times: int | None = None
    ttl_s: float | None = None
    # Per-rule delivery: chunking, gap between chunks, time to first chunk.
    chunking: str | None = None
    interval_ms: float | None = None
    ttft_ms: float | None = None
    # A fault the rule's answers get (see config FAULT_KINDS), and how often.
    fault: str | None = None
    fault_probability: float = 1.0
    # The rule as written, for listing.
    source: Mapping[str, Any] = field(default_factory=lambda: NO_HEADERS)

    @property
    def endpoints(self) -> tuple[str, ...]:
        if self.match.endpoints is not None:
            return self.match.endpoints
        if _only_errors(self.answer):
            return ENDPOINTS
        return TEXT_ENDPOINTS


def _only_errors(answer: Answer) -> bool:
    if isinstance(answer, SequenceAnswer):
        return all(isinstance(s, ErrorAnswer) for s in answer.steps)
    return isinstance(answer, ErrorAnswer)


_RULE_KEYS = ("name", "match", "answer", "times", "ttl_s", "stream", "fault")


@worded
def parse_rule(raw: Any, path: str, base_dir: str | None = None) -> Rule:
    """One rule; ``base_dir`` is where ``file:`` fixtures live (default: cwd)."""
    spec = checks.mapping(raw, path, string_keys=True)
    checks.known_keys(spec, path, _RULE_KEYS)
    at = f"{path}.".__add__
    name = None
    if spec.get("name") is not None:
        name = checks.string(spec["name"], at("name"), nonempty=True)
        if not _NAME.match(name):
            raise RuleError(
                at("name"), "use letters, digits and _ . : @ - (at most 100)"
            )
    conditions = parse_conditions(spec.get("match"), at("match"))
    if "answer" not in spec:
        raise RuleError(at("answer"), "required: what the rule answers")
    groups = max((c.groups for c in conditions.regexes()), default=-1)
    names = frozenset().union(*(c.names for c in conditions.regexes()))
    clash = names & set(TEMPLATE_FIELDS)
    if clash:
        raise RuleError(
            at("match"),
            f"regex group name {sorted(clash)[0]!r} is a template field name",
        )
    answer = AnswerParser(base_dir, groups, names).answer(spec["answer"], at("answer"))
    times = ttl_s = None
    if spec.get("times") is not None:
        times = checks.integer(spec["times"], at("times"), ge=1, le=2**31)
    if spec.get("ttl_s") is not None:
        ttl_s = checks.number(spec["ttl_s"], at("ttl_s"), ge=0.001, le=10 * 365 * 86400)
    chunking = interval_ms = ttft_ms = None
    if spec.get("stream") is not None:
        stream = checks.mapping(spec["stream"], at("stream"), string_keys=True)
        checks.known_keys(stream, at("stream"), ("chunking", "interval_ms", "ttft_ms"))
        if "chunking" in stream:
            chunking = checks.one_of(
                stream["chunking"], at("stream.chunking"), CHUNKINGS
            )
        if "interval_ms" in stream:
            interval_ms = checks.number(
                stream["interval_ms"], at("stream.interval_ms"), ge=0, le=600_000
            )
        if "ttft_ms" in stream:
            ttft_ms = checks.number(
                stream["ttft_ms"], at("stream.ttft_ms"), ge=0, le=3_600_000
            )
    fault, fault_probability = _fault(spec.get("fault"), at("fault"))
    return Rule(
        name=name,
        match=conditions,
        answer=answer,
        times=times,
        ttl_s=ttl_s,
        chunking=chunking,
        interval_ms=interval_ms,
        ttft_ms=ttft_ms,
        fault=fault,
        fault_probability=fault_probability,
        source=MappingProxyType(dict(spec)),
    )


def _fault(raw: Any, path: str) -> tuple[str | None, float]:
    """``fault: cut_reset`` or ``fault: {kind: stall, probability: 0.5}``."""
    if raw is None:
        return None, 1.0
    if isinstance(raw, str):
        spec = {"kind": raw}
    else:
        spec = checks.mapping(raw, path, string_keys=True)
    checks.known_keys(spec, path, ("kind", "probability"))
    where = path if isinstance(raw, str) else f"{path}.kind"
    kind = checks.one_of(spec.get("kind"), where, FAULT_KINDS)
    probability = 1.0
    if spec.get("probability") is not None:
        probability = checks.number(
            spec["probability"], f"{path}.probability", ge=0, le=1
        )
    return kind, probability


@worded
def parse_rules(
    raw: Any, path: str = "rules", base_dir: str | None = None
) -> tuple[Rule, ...]:
    """The config's ``rules:`` list; names must be unique."""
    if raw is None:
        return ()
    items = checks.array(raw, path)
    rules = tuple(parse_rule(r, f"{path}[{i}]", base_dir) for i, r in enumerate(items))
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name is not None:
            if rule.name in seen:
                raise RuleError(
                    f"{path}[{i}].name",
                    f"duplicate name {rule.name!r} (also {path}[{seen[rule.name]}])",
                )
            seen[rule.name] = i
    return rules
