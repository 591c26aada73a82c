"""Scenario rules: a test says what the mock answers, and the first match wins.

A rule is a frozen value parsed from the config's ``rules:`` list (or from the
control API), every mistake named by its key path
(``rules[3].match.content.regex: invalid regex ...``).  The ``RuleBook`` keeps
the rules in order with their run-time state (match counts, ``times`` left,
expiry); the engine asks it per request -- tentatively, with a ``Claim`` it
commits once the request is admitted -- and renders the answer it gets
(templates, lorem, fixtures, scripted tool calls, JSON) into its plan.
Pure: no Twisted, no clock of its own, no I/O except reading fixtures while
parsing, so a reload re-reads them and a request never touches the disk.

The modules, from the bottom: ``errors`` (RuleError, and how the rules word
a failed ``mockai_tw.checks`` check), ``context`` (the request as rules see
it), ``conditions``, ``templates``, ``answers`` (and their parser), ``rule``,
``book`` (Entry, Hit, Claim, RuleBook), ``rendering``.  Import from here.
"""

from mockai_tw.engine.rules.answers import (
    ANSWER_KINDS,
    MAX_FIXTURE_BYTES,
    PICKS,
    THEN,
    Answer,
    ChoicesAnswer,
    EchoAnswer,
    ErrorAnswer,
    FileAnswer,
    JsonAnswer,
    LoremAnswer,
    SequenceAnswer,
    TextAnswer,
    ToolCallsAnswer,
    ToolCallSpec,
)
from mockai_tw.engine.rules.book import Claim, Entry, Hit, RuleBook
from mockai_tw.engine.rules.conditions import (
    NO_CAPTURES,
    Captures,
    Conditions,
    TextCondition,
    parse_conditions,
    text_condition,
)
from mockai_tw.engine.rules.context import (
    ENDPOINTS,
    NO_HEADERS,
    TEXT_ENDPOINTS,
    RequestContext,
    chat_context,
    input_context,
    prompt_context,
)
from mockai_tw.engine.rules.errors import RuleError
from mockai_tw.engine.rules.rendering import (
    LOREM,
    Generators,
    Reply,
    ScriptedError,
    lorem,
    render,
    scripted_error,
)
from mockai_tw.engine.rules.rule import CHUNKINGS, Rule, parse_rule, parse_rules
from mockai_tw.engine.rules.templates import TEMPLATE_FIELDS, Template, parse_template

__all__ = [
    "ANSWER_KINDS",
    "CHUNKINGS",
    "ENDPOINTS",
    "LOREM",
    "MAX_FIXTURE_BYTES",
    "NO_CAPTURES",
    "NO_HEADERS",
    "PICKS",
    "TEMPLATE_FIELDS",
    "TEXT_ENDPOINTS",
    "THEN",
    "Answer",
    "Captures",
    "ChoicesAnswer",
    "Claim",
    "Conditions",
    "EchoAnswer",
    "Entry",
    "ErrorAnswer",
    "FileAnswer",
    "Generators",
    "Hit",
    "JsonAnswer",
    "LoremAnswer",
    "Reply",
    "RequestContext",
    "Rule",
    "RuleBook",
    "RuleError",
    "ScriptedError",
    "SequenceAnswer",
    "Template",
    "TextAnswer",
    "TextCondition",
    "ToolCallSpec",
    "ToolCallsAnswer",
    "chat_context",
    "input_context",
    "lorem",
    "parse_conditions",
    "parse_rule",
    "parse_rules",
    "parse_template",
    "prompt_context",
    "render",
    "scripted_error",
    "text_condition",
]
