"""Scenario rules: parsing with key paths, matching, answers -- pure, then live.

The pure half drives ``mockai_tw.engine.rules`` without sockets (with
hypothesis for matching order and template rendering); the live half sends
every answer kind through the official SDK to a listening server and checks
the bodies against OpenAI's schemas.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import jsonschema
import openai
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import treq
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES, ConfigError
from mockai_tw.config_load import load_config, parse_config
from mockai_tw.engine import tokenizer
from mockai_tw.engine.rules import (
    TEMPLATE_FIELDS,
    Claim,
    RequestContext,
    RuleBook,
    RuleError,
    ScriptedError,
    lorem,
    parse_rule,
    parse_rules,
    parse_template,
    render,
)
from mockai_tw.request.chat import FunctionDef
from mockai_tw.testing import MockAI, start_for
from tests.openapi import validate
from tests.support import Live, events, start

CHAT = "/v1/chat/completions"


def error_of(raw: Any, base_dir: str | None = None) -> str:
    """The message a bad rule list gets, as the fourth rule of four."""
    ok = {"answer": "fine"}
    try:
        parse_rules([ok, ok, ok, raw], base_dir=base_dir)
    except RuleError as error:
        return str(error)
    raise AssertionError(f"no error for {raw!r}")


def ctx(text: str = "hello", **kw: Any) -> RequestContext:
    kw.setdefault("endpoint", "chat")
    kw.setdefault("model", "gpt-4o")
    kw.setdefault("messages", (("user", text),))
    return RequestContext(**kw)


class Gens:
    """Stands in for the engine when rendering."""

    def reply_text(self, rng: random.Random) -> str:
        return "canned"

    def arguments(self, function: FunctionDef, rng: random.Random) -> str:
        return json.dumps({"generated_for": function.name})


def answer(rule: Any, context: RequestContext | None = None, **kw: Any) -> str:
    book = RuleBook(parse_rules([rule]))
    hit = book.match(context or ctx(), 0.0)
    assert hit is not None
    return render(hit, random.Random(0), Gens(), **kw).text


class ParseTests(TestCase):
    """Every mistake stops the load with its key path."""

    def test_bad_regex_names_the_key(self) -> None:
        message = error_of(
            {"match": {"content": {"regex": "(unclosed"}}, "answer": "x"}
        )
        self.assertTrue(
            message.startswith("rules[3].match.content.regex: invalid regex"), message
        )

    def test_messages(self) -> None:
        cases: list[tuple[Any, str]] = [
            ({"answer": {"shout": "x"}}, "rules[3].answer.shout: unknown answer kind"),
            ({"answer": {"text": "a", "echo": True}}, "rules[3].answer: give one"),
            ({"match": {"colour": "red"}, "answer": "x"}, "rules[3].match.colour:"),
            ({"match": {}}, "rules[3].answer: required"),
            ({"answer": "x", "tiems": 2}, "rules[3].tiems: unknown key"),
            ({"answer": "x", "times": 0}, "rules[3].times: must be between"),
            (
                {"match": {"endpoint": "audio"}, "answer": "x"},
                "rules[3].match.endpoint",
            ),
            ({"match": {"model": []}, "answer": "x"}, "rules[3].match.model"),
            (
                {"match": {"last_role": "robot"}, "answer": "x"},
                "rules[3].match.last_role",
            ),
            (
                {"answer": "{{nope}}"},
                "rules[3].answer: unknown template field {{nope}}",
            ),
            ({"answer": "{{1}}"}, "no regex to capture from"),
            (
                {"match": {"content": {"regex": "(a)"}}, "answer": {"text": "{{2}}"}},
                "rules[3].answer.text: template field {{2}}",
            ),
            (
                {"answer": {"choices": ["a"], "pick": "best"}},
                "rules[3].answer.pick: must be one of random, round_robin, seeded",
            ),
            ({"answer": {"sequence": [{"sequence": ["a"]}]}}, "cannot hold another"),
            ({"answer": {"error": {"status": 200}}}, "rules[3].answer.error.status"),
            ({"answer": {"lorem": 0}}, "rules[3].answer.lorem"),
            ({"answer": {"tool_calls": [{"arguments": {}}]}}, "tool_calls[0].name"),
            ({"answer": {"tool_calls": ["bad name"]}}, "is not a function name"),
            (
                {"answer": {"tool_calls": [{"name": "f", "arguments": "{no"}]}},
                "tool_calls[0].arguments: is not valid JSON",
            ),
            ({"answer": {"json_schema": {"type": 7}}}, "json_schema: invalid schema"),
            ({"answer": "x", "stream": {"chunking": "byte"}}, "stream.chunking"),
            ({"answer": {"echo": "yes"}}, "rules[3].answer.echo: must be true"),
        ]
        for raw, expected in cases:
            message = error_of(raw)
            self.assertIn(expected, message, raw)
            self.assertNotIn("\n", message)

    def test_duplicate_names(self) -> None:
        with self.assertRaises(RuleError) as caught:
            parse_rules([{"name": "a", "answer": "x"}, {"name": "a", "answer": "y"}])
        self.assertEqual(
            str(caught.exception), "rules[1].name: duplicate name 'a' (also rules[0])"
        )

    def test_fixtures_stay_in_the_config_directory(self) -> None:
        base = self.mktemp()
        os.makedirs(os.path.join(base, "sub"))
        outside = os.path.abspath(os.path.join(os.path.dirname(base), "secret.txt"))
        with open(outside, "w") as f:
            f.write("no")
        os.symlink(outside, os.path.join(base, "sub", "link.txt"))
        for name, expected in [
            ("../secret.txt", "leaves the config file's directory"),
            ("sub/link.txt", "leaves the config file's directory"),
            (outside, "must be relative"),
            ("missing.txt", "cannot read 'missing.txt'"),
        ]:
            message = error_of({"answer": {"file": name}}, base_dir=base)
            self.assertIn("rules[3].answer.file: ", message)
            self.assertIn(expected, message)

    def test_json_fixture_must_parse(self) -> None:
        base = self.mktemp()
        os.makedirs(base)
        with open(os.path.join(base, "bad.json"), "w") as f:
            f.write("{nope")
        self.assertIn(
            "'bad.json' is not valid JSON",
            error_of({"answer": {"file": "bad.json"}}, base_dir=base),
        )

    def test_config_file_errors_and_relative_fixtures(self) -> None:
        base = self.mktemp()
        os.makedirs(base)
        with open(os.path.join(base, "hello.txt"), "w", encoding="utf-8") as f:
            f.write("Hello from a file.")
        path = os.path.join(base, "mockai.yaml")
        rules = [{"answer": "a"}] * 3
        with open(path, "w") as f:
            yaml.safe_dump(
                {
                    "access_token": "t",
                    "rules": [*rules, {"answer": {"file": "hello.txt"}}],
                },
                f,
            )
        config = load_config(path, {})
        self.assertEqual(config.rules[3].answer.kind, "file")
        with open(path, "w") as f:
            bad = {"match": {"content": {"regex": "["}}, "answer": "x"}
            yaml.safe_dump({"access_token": "t", "rules": [*rules, bad]}, f)
        with self.assertRaises(ConfigError) as caught:
            load_config(path, {})
        self.assertEqual(caught.exception.path, "rules[3].match.content.regex")

    def test_new_config_keys(self) -> None:
        config = parse_config(
            {"access_token": "t", "admin_token": "adm", "journal": {"size": 5}}, {}
        )
        self.assertEqual(config.admin_token, "adm")
        self.assertEqual(config.journal.size, 5)
        self.assertTrue(config.journal.enabled)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", "journal": {"size": 0}}, {})
        self.assertEqual(str(caught.exception), "journal.size: must be >= 1")
        self.assertEqual(config.journal.max_bytes, 32 * 1024 * 1024)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", "journal": {"max_bytes": 1000}}, {})
        self.assertEqual(str(caught.exception), "journal.max_bytes: must be >= 65536")


class MatchTests(TestCase):
    def matches(self, match: dict[str, Any], context: RequestContext) -> bool:
        rule = parse_rule({"match": match, "answer": "x"}, "rule")
        return rule.match.evaluate(context, rule.endpoints) is not None

    def test_conditions(self) -> None:
        tool = FunctionDef("lookup_order")
        full = ctx(
            "Refund order 42",
            messages=(
                ("system", "You are terse."),
                ("user", "Refund order 42"),
                ("assistant", ""),
                ("tool", '{"status": "shipped"}'),
            ),
            tools=(tool,),
            stream=True,
            headers={"x-scenario": "refunds"},
            user="alice",
            metadata={"tenant": "acme", "tier": 3},
        )
        yes: list[dict[str, Any]] = [
            {},
            {"endpoint": "chat"},
            {"endpoint": ["completions", "/v1/chat/completions"]},
            {"model": "gpt-4o"},
            {"model": "gpt-4*"},
            {"model": {"regex": "^gpt-4o$"}},
            {"model": ["o3-mini", "gpt-4o"]},
            {"content": "order 42"},
            {"content": {"equals": "refund ORDER 42", "ignore_case": True}},
            {"content": {"regex": r"order (\d+)"}},
            {"content": {"glob": "Refund*"}},
            {"message": "shipped"},
            {"system": {"contains": "TERSE", "ignore_case": True}},
            {"last_role": ["tool", "function"]},
            {"tools": True},
            {"tools": "lookup_order"},
            {"stream": True},
            {"headers": {"X-Scenario": "refunds"}},
            {"user": "alice"},
            {"metadata": {"tenant": "acme", "tier": "3"}},
            {"content": "Refund", "stream": True, "model": "gpt-4o"},
        ]
        no: list[dict[str, Any]] = [
            {"endpoint": "completions"},
            {"model": "gpt-4"},
            {"model": "o*"},
            {"content": "refund"},
            {"content": {"equals": "order 42"}},
            {"message": "cancelled"},
            {"system": "verbose"},
            {"last_role": "user"},
            {"tools": False},
            {"tools": ["lookup_order", "cancel_order"]},
            {"stream": False},
            {"headers": {"x-scenario": "orders"}},
            {"headers": {"x-other": "refunds"}},
            {"user": "bob"},
            {"metadata": {"tenant": "globex"}},
            {"content": "Refund", "stream": False},
        ]
        for match in yes:
            self.assertTrue(self.matches(match, full), match)
        for match in no:
            self.assertFalse(self.matches(match, full), match)

    def test_default_endpoints_follow_the_answer(self) -> None:
        embeddings = ctx(endpoint="embeddings")
        text = parse_rule({"answer": "x"}, "r")
        error = parse_rule({"answer": {"error": 500}}, "r")
        self.assertIsNone(text.match.evaluate(embeddings, text.endpoints))
        self.assertIsNotNone(error.match.evaluate(embeddings, error.endpoints))

    def test_captures(self) -> None:
        rule = {
            "match": {
                "content": {"regex": r"order #?(?P<order>\d+) for (\w+)"},
                "message": {"regex": r'"status": "(?P<status>\w+)"'},
            },
            "answer": "{{0}}|{{1}}|{{2}}|{{order}}|{{status}}",
        }
        context = ctx(
            messages=(
                ("user", "Find order #42 for bob"),
                ("tool", '{"status": "lost"}'),
            )
        )
        self.assertEqual(answer(rule, context), "order #42 for bob|42|bob|42|lost")


class AnswerTests(TestCase):
    def test_text_template_fields(self) -> None:
        context = ctx(
            "hi there",
            messages=(("system", "Be nice."), ("user", "hi there")),
            headers={"x-trace": "t-1"},
            user="u1",
            metadata={"k": "v"},
        )
        template = (
            "{{model}} {{endpoint}} {{user}} [{{content}}] [{{system}}]"
            " {{header.X-Trace}} {{metadata.k}} #{{count}} {{header.absent}}."
        )
        text = answer({"answer": template}, context)
        self.assertEqual(text, "gpt-4o chat u1 [hi there] [Be nice.] t-1 v #1 .")

    def test_choices(self) -> None:
        book = RuleBook(
            parse_rules(
                [{"answer": {"choices": ["a", "b", "c"], "pick": "round_robin"}}]
            )
        )
        picks = []
        for _ in range(4):
            hit = book.match(ctx(), 0)
            assert hit is not None
            picks.append(render(hit, random.Random(), Gens()).text)
        self.assertEqual(picks, ["a", "b", "c", "a"])
        seeded = {"answer": {"choices": ["a", "b", "c"], "pick": "seeded", "seed": 7}}
        first = {answer(seeded, ctx("same prompt")) for _ in range(5)}
        self.assertEqual(len(first), 1)
        self.assertIn(answer({"answer": {"choices": ["x", "y"]}}), ("x", "y"))

    def test_echo_and_lorem(self) -> None:
        self.assertEqual(answer({"answer": {"echo": True}}, ctx("say me")), "say me")
        text = answer({"answer": {"lorem": 25}})
        self.assertEqual(text, lorem(25, "gpt-4o"))
        self.assertTrue(text.startswith("Lorem ipsum dolor"))
        self.assertEqual(tokenizer.count(text, "gpt-4o"), 25)

    def test_tool_calls_given_and_generated(self) -> None:
        rule = {
            "match": {"content": {"regex": r"order (\d+)"}},
            "answer": {
                "tool_calls": [
                    {"name": "lookup", "arguments": {"id": "{{1}}", "n": 2}},
                    {"name": "audit"},
                ]
            },
        }
        book = RuleBook(parse_rules([rule]))
        hit = book.match(ctx("order 42"), 0)
        assert hit is not None
        reply = render(hit, random.Random(0), Gens())
        self.assertEqual(
            reply.tool_calls,
            (("lookup", '{"id":"42","n":2}'), ("audit", '{"generated_for": "audit"}')),
        )

    def test_json_given_and_generated(self) -> None:
        given = answer({"answer": {"json": {"model": "{{model}}", "ok": True}}})
        self.assertEqual(json.loads(given), {"model": "gpt-4o", "ok": True})
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        }
        generated = json.loads(answer({"answer": {"json_schema": schema}}))
        jsonschema.validate(generated, schema)
        from_request = answer(
            {"answer": {"json_schema": "request"}}, ctx(response_schema=schema)
        )
        jsonschema.validate(json.loads(from_request), schema)
        fallback = answer({"answer": {"json_schema": "request"}})
        self.assertEqual(json.loads(fallback), {"message": "canned"})

    def test_error(self) -> None:
        rule = {
            "match": {"content": {"regex": "(?P<who>\\w+)"}},
            "answer": {
                "error": {
                    "status": 429,
                    "message": "Slow down, {{who}}.",
                    "headers": {"Retry-After": 3},
                }
            },
        }
        with self.assertRaises(ScriptedError) as caught:
            answer(rule, ctx("alice"))
        error = caught.exception
        self.assertEqual(
            (error.status, error.type, error.code, error.message),
            (429, "requests", "rate_limit_exceeded", "Slow down, alice."),
        )
        self.assertEqual(dict(error.headers), {"retry-after": "3"})
        self.assertEqual(error.rule, "rule-0")

    def test_sequence_repeat_last_and_cycle(self) -> None:
        for then, expected in [
            ("repeat_last", ["one", "two", "two", "two"]),
            ("cycle", ["one", "two", "one", "two"]),
        ]:
            book = RuleBook(
                parse_rules([{"answer": {"sequence": ["one", "two"], "then": then}}])
            )
            got = []
            for _ in range(4):
                hit = book.match(ctx(), 0)
                assert hit is not None
                got.append(render(hit, random.Random(), Gens()).text)
            self.assertEqual(got, expected)

    def test_times_ttl_and_positions(self) -> None:
        book = RuleBook(parse_rules([{"name": "file", "answer": "from file"}]), now=0)
        once = book.add(parse_rule({"answer": "once", "times": 1}, "rule"), 0, "first")
        book.add(parse_rule({"answer": "late", "ttl_s": 10}, "rule"), 0, "last")
        self.assertEqual([e.id for e in book.entries()], [once.id, "file", "added-2"])
        first = book.match(ctx(), 1)
        second = book.match(ctx(), 1)
        assert first is not None and second is not None
        self.assertEqual((first.rule, second.rule), (once.id, "file"))
        self.assertNotIn(once.id, [e.id for e in book.entries()])
        self.assertTrue(book.delete("file"))
        hit = book.match(ctx(), 5)
        self.assertEqual(hit.rule if hit else None, "added-2")
        self.assertIsNone(book.match(ctx(), 10))
        self.assertEqual(book.entries(10), [])
        replaced = book.add(parse_rule({"name": "n", "answer": "a"}, "rule"), 0)
        with self.assertRaises(RuleError):
            book.add(parse_rule({"name": "n", "answer": "b"}, "rule"), 0)
        book.replace("n", parse_rule({"answer": "b"}, "rule"), 0)
        self.assertIsNot(book.get("n"), replaced)
        book.reset(parse_rules([{"answer": "file again"}]), 0)
        self.assertEqual([e.id for e in book.entries()], ["rule-0"])


class ClaimTests(TestCase):
    """Match without consuming, then commit: a refused request moves nothing."""

    def test_uncommitted_claim_changes_nothing(self) -> None:
        book = RuleBook(parse_rules([{"name": "once", "answer": "a", "times": 1}]))
        claim = Claim()
        hit = book.match(ctx(), 0, claim)
        assert hit is not None
        self.assertEqual((hit.rule, hit.count), ("once", 1))
        self.assertEqual(claim.hits, (hit,))
        entry = book.get("once")
        assert entry is not None
        self.assertEqual((entry.left, entry.hits), (1, 0))
        self.assertEqual(entry.view(0)["times_left"], 1)
        # Refused, so never committed: the next request still gets the rule.
        again = book.match(ctx(), 0)
        self.assertEqual(again.rule if again else None, "once")
        self.assertIsNone(book.get("once"))

    def test_commit_consumes_and_twice_is_a_no_op(self) -> None:
        book = RuleBook(
            parse_rules(
                [
                    {"name": "once", "answer": "a", "times": 1},
                    {"name": "twice", "answer": "b", "times": 2},
                ]
            )
        )
        claim = Claim()
        book.match(ctx(), 0, claim)
        book.commit(claim, 0)
        self.assertIsNone(book.get("once"))
        self.assertEqual(claim.pending, ())
        book.commit(claim, 0)
        twice = book.get("twice")
        assert twice is not None
        self.assertEqual((twice.left, twice.hits), (2, 0))
        self.assertEqual([e.id for e in book.entries()], ["twice"])

    def test_one_claim_uses_up_times_in_order(self) -> None:
        book = RuleBook(
            parse_rules(
                [
                    {"name": "once", "answer": "a", "times": 1},
                    {"name": "twice", "answer": "b", "times": 2},
                    {"name": "always", "answer": "c"},
                ]
            )
        )
        claim = Claim()
        hits = [book.match(ctx(), 0, claim) for _ in range(5)]
        self.assertEqual(
            [(h.rule, h.count) if h else None for h in hits],
            [("once", 1), ("twice", 1), ("twice", 2), ("always", 1), ("always", 2)],
        )
        self.assertEqual(claim.hits, tuple(hits))
        self.assertEqual([e.hits for e in book.entries()], [0, 0, 0])
        book.commit(claim, 0)
        self.assertEqual([(e.id, e.hits) for e in book.entries()], [("always", 2)])

    def test_sequence_steps_within_a_claim(self) -> None:
        book = RuleBook(parse_rules([{"answer": {"sequence": ["a", "b", "c"]}}]))
        claim = Claim()
        got = []
        for _ in range(2):
            hit = book.match(ctx(), 0, claim)
            assert hit is not None
            got.append((render(hit, random.Random(), Gens()).text, hit.count))
        self.assertEqual(got, [("a", 1), ("b", 2)])
        book.commit(claim, 0)
        hit = book.match(ctx(), 0)
        assert hit is not None
        self.assertEqual(
            (render(hit, random.Random(), Gens()).text, hit.count), ("c", 3)
        )

    def test_replaced_removed_or_reloaded_entries_are_skipped(self) -> None:
        book = RuleBook(parse_rules([{"name": "file", "answer": "f", "times": 3}]))
        book.add(parse_rule({"name": "n", "answer": "a", "times": 1}, "rule"), 0)
        book.add(parse_rule({"name": "gone", "answer": "g"}, "rule"), 0, "first")
        claim = Claim()
        for text in ("x", "y", "z"):
            book.match(ctx(text), 0, claim)
        self.assertEqual([h.rule for h in claim.hits], ["gone", "gone", "gone"])
        book.delete("gone")
        for _ in range(4):
            book.match(ctx(), 0, claim)
        self.assertEqual(
            [h.rule for h in claim.hits[3:]], ["file", "file", "file", "n"]
        )
        new = book.replace("n", parse_rule({"answer": "b", "times": 1}, "rule"), 0)
        book.load(parse_rules([{"name": "file", "answer": "f2", "times": 3}]), 0)
        book.commit(claim, 0)
        self.assertIs(book.get("n"), new)
        self.assertEqual(
            [(e.id, e.hits, e.left) for e in book.entries()],
            [("file", 0, 3), ("n", 0, 1)],
        )

    def test_ttl_expiry_is_unaffected(self) -> None:
        book = RuleBook()
        book.add(parse_rule({"name": "late", "answer": "a", "ttl_s": 10}, "rule"), 0)
        claim = Claim()
        hit = book.match(ctx(), 5, claim)
        self.assertEqual(hit.rule if hit else None, "late")
        late = book.get("late")
        assert late is not None
        self.assertEqual(late.expires, 10)
        self.assertIsNone(book.match(ctx(), 10, claim))
        self.assertEqual(len(claim.hits), 1)
        # Committed after it expired: nothing moves, it stays expired.
        book.commit(claim, 10)
        self.assertEqual(late.hits, 0)
        self.assertIsNone(book.match(ctx(), 10))
        self.assertEqual(book.entries(10), [])

    def test_no_claim_is_claim_then_commit(self) -> None:
        book = RuleBook(parse_rules([{"name": "once", "answer": "a", "times": 1}]))
        hit = book.match(ctx(), 0)
        self.assertEqual((hit.rule, hit.count) if hit else None, ("once", 1))
        self.assertIsNone(book.get("once"))
        self.assertIsNone(book.match(ctx(), 0))


# --- properties ----------------------------------------------------------------

MODELS = ("gpt-4o", "gpt-4o-mini", "o3-mini")
WORDS = ("refund", "order", "hello")

condition = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from([*MODELS, "gpt-4o*", "o*"]),
        "content": st.sampled_from(WORDS),
        "stream": st.booleans(),
        "endpoint": st.sampled_from(["chat", "completions"]),
        "headers": st.fixed_dictionaries({"x-case": st.sampled_from(["a", "b"])}),
    },
)
context = st.builds(
    lambda model, words, stream, endpoint, case: ctx(
        " ".join(words),
        model=model,
        stream=stream,
        endpoint=endpoint,
        headers={"x-case": case},
    ),
    st.sampled_from(MODELS),
    st.lists(st.sampled_from(WORDS), max_size=3),
    st.booleans(),
    st.sampled_from(["chat", "completions"]),
    st.sampled_from(["a", "b"]),
)


class PropertyTests(TestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(condition, max_size=6), context)
    def test_first_match_wins(
        self, matches: list[dict[str, Any]], request: RequestContext
    ) -> None:
        rules = parse_rules(
            [{"match": m, "answer": str(i)} for i, m in enumerate(matches)]
        )
        expected = next(
            (
                i
                for i, rule in enumerate(rules)
                if rule.match.evaluate(request, rule.endpoints) is not None
            ),
            None,
        )
        hit = RuleBook(rules).match(request, 0.0)
        self.assertEqual(None if hit is None else int(hit.rule.split("-")[1]), expected)
        # A rule added first that matches everything wins over all of them.
        book = RuleBook(rules)
        book.add(parse_rule({"answer": "top"}, "rule"), 0.0, "first")
        top = book.match(request, 0.0)
        self.assertEqual(top.rule if top else None, "added-1")

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(condition, st.one_of(st.none(), st.integers(1, 3))),
            max_size=5,
        ),
        st.lists(context, max_size=6),
    )
    def test_one_claim_matches_like_its_requests_one_by_one(
        self,
        specs: list[tuple[dict[str, Any], int | None]],
        requests: list[RequestContext],
    ) -> None:
        rules = parse_rules(
            [
                {"match": m, "answer": {"sequence": ["a", "b", "c"]}, "times": t}
                for m, t in specs
            ]
        )
        one_by_one, claimed = RuleBook(rules), RuleBook(rules)
        expected = [one_by_one.match(r, 0.0) for r in requests]
        claim = Claim()
        got = [claimed.match(r, 0.0, claim) for r in requests]
        self.assertEqual(got, expected)
        self.assertEqual(claim.hits, tuple(h for h in got if h is not None))
        self.assertEqual(
            [e.view(i) for i, e in enumerate(claimed.entries())],
            [e.view(i) for i, e in enumerate(RuleBook(rules).entries())],
        )
        claimed.commit(claim, 0.0)
        self.assertEqual(
            [e.view(i) for i, e in enumerate(claimed.entries())],
            [e.view(i) for i, e in enumerate(one_by_one.entries())],
        )

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.text(st.characters(blacklist_characters="{}"), max_size=8).map(
                    lambda t: ("text", t)
                ),
                st.sampled_from([*TEMPLATE_FIELDS, "header.x-a", "metadata.k"]).map(
                    lambda f: ("field", f)
                ),
            ),
            max_size=8,
        ),
        st.text(max_size=12),
    )
    def test_template_renders_part_by_part(
        self, parts: list[tuple[str, str]], value: str
    ) -> None:
        source = "".join(p if kind == "text" else "{{" + p + "}}" for kind, p in parts)
        template = parse_template(source, "t")

        def lookup(name: str) -> str:
            return f"<{name}:{value}>"

        expected = "".join(p if kind == "text" else lookup(p) for kind, p in parts)
        self.assertEqual(template.render(lookup), expected)
        self.assertEqual(template.text, source)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=40).filter(lambda t: "{{" not in t))
    def test_text_without_fields_is_literal(self, text: str) -> None:
        self.assertEqual(parse_template(text, "t").render(lambda name: "X"), text)


# --- live, through the official SDK --------------------------------------------


async def sdk(live: Live | MockAI, **kw: Any) -> Any:
    client = live.sdk() if isinstance(live, Live) else live.client()
    kw.setdefault("model", "gpt-4o")
    kw.setdefault("messages", [{"role": "user", "content": "hello"}])
    return await deferToThread(lambda: client.chat.completions.create(**kw))


async def post(live: Live, body: dict[str, Any], path: str = CHAT) -> Any:
    response, payload = await live.json("POST", path, {"model": "gpt-4o", **body})
    assert response.code == 200, payload
    return payload


LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}


class LiveRuleTests(TestCase):
    async def test_text_template(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "match": {"content": {"regex": r"order (?P<id>\d+)"}},
                        "answer": "Order {{id}} is on its way ({{model}}).",
                    }
                ]
            },
        )
        reply = await sdk(
            live, messages=[{"role": "user", "content": "Where is order 7?"}]
        )
        self.assertEqual(
            reply.choices[0].message.content, "Order 7 is on its way (gpt-4o)."
        )
        payload = await post(
            live, {"messages": [{"role": "user", "content": "order 8"}]}
        )
        validate(payload, "CreateChatCompletionResponse")
        self.assertEqual(
            payload["choices"][0]["message"]["content"],
            "Order 8 is on its way (gpt-4o).",
        )
        other = await sdk(live)
        self.assertIn(other.choices[0].message.content, ORIGINAL_REPLIES)

    async def test_choices_round_robin_and_echo(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {"match": {"content": "echo"}, "answer": {"echo": True}},
                    {"answer": {"choices": ["a", "b"], "pick": "round_robin"}},
                ]
            },
        )
        texts = [(await sdk(live)).choices[0].message.content for _ in range(3)]
        self.assertEqual(texts, ["a", "b", "a"])
        echoed = await sdk(live, messages=[{"role": "user", "content": "echo this"}])
        self.assertEqual(echoed.choices[0].message.content, "echo this")

    async def test_lorem_counts_its_tokens(self) -> None:
        live = await start(self, {"rules": [{"answer": {"lorem": 40}}]})
        reply = await sdk(live)
        self.assertEqual(reply.usage.completion_tokens, 40)
        self.assertEqual(reply.choices[0].message.content, lorem(40, "gpt-4o"))

    async def test_file_fixture(self) -> None:
        base = self.mktemp()
        os.makedirs(base)
        with open(os.path.join(base, "answer.json"), "w") as f:
            json.dump({"refund": "approved"}, f)
        path = os.path.join(base, "mockai.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(
                {
                    "access_token": "sk-t",
                    "rules": [{"answer": {"file": "answer.json"}}],
                },
                f,
            )
        mock = await start_for(self, config_file=path)
        reply = await sdk(mock)
        self.assertEqual(
            json.loads(reply.choices[0].message.content), {"refund": "approved"}
        )

    async def test_tool_calls_given_and_generated(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "match": {"content": {"regex": r"order (\d+)"}},
                        "answer": {
                            "tool_calls": [
                                {
                                    "name": "lookup_order",
                                    "arguments": {"order_id": "{{1}}"},
                                }
                            ]
                        },
                    },
                    {
                        "match": {"tools": True},
                        "answer": {"tool_calls": ["lookup_order"]},
                    },
                ]
            },
        )
        given_reply = await sdk(
            live, tools=[LOOKUP], messages=[{"role": "user", "content": "order 42?"}]
        )
        call = given_reply.choices[0].message.tool_calls[0]
        self.assertEqual(given_reply.choices[0].finish_reason, "tool_calls")
        self.assertEqual(
            (call.function.name, json.loads(call.function.arguments)),
            ("lookup_order", {"order_id": "42"}),
        )
        generated = await post(
            live, {"tools": [LOOKUP], "messages": [{"role": "user", "content": "hi"}]}
        )
        validate(generated, "CreateChatCompletionResponse")
        arguments = generated["choices"][0]["message"]["tool_calls"][0]["function"][
            "arguments"
        ]
        jsonschema.validate(json.loads(arguments), LOOKUP["function"]["parameters"])  # type: ignore[index]
        response = await live.request(
            "POST",
            CHAT,
            {
                "model": "gpt-4o",
                "stream": True,
                "tools": [LOOKUP],
                "messages": [{"role": "user", "content": "order 9"}],
            },
        )
        chunks = [json.loads(p) for p in events(await treq.content(response))[:-1]]
        for chunk in chunks:
            validate(chunk, "CreateChatCompletionStreamResponse")
        streamed = "".join(
            c["choices"][0]["delta"]
            .get("tool_calls", [{}])[0]
            .get("function", {})
            .get("arguments", "")
            for c in chunks
            if c["choices"]
        )
        self.assertEqual(json.loads(streamed), {"order_id": "9"})

    async def test_json_given_and_from_the_request_schema(self) -> None:
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
            "required": ["city", "temp"],
            "additionalProperties": False,
        }
        live = await start(
            self,
            {
                "rules": [
                    {
                        "match": {"content": "given"},
                        "answer": {"json": {"user": "{{user}}"}},
                    },
                    {"answer": {"json_schema": "request"}},
                ]
            },
        )
        given_reply = await sdk(
            live, user="u-1", messages=[{"role": "user", "content": "given"}]
        )
        self.assertEqual(
            json.loads(given_reply.choices[0].message.content), {"user": "u-1"}
        )
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        }
        generated = await sdk(live, response_format=fmt)
        jsonschema.validate(json.loads(generated.choices[0].message.content), schema)

    async def test_error_answer(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "match": {"headers": {"x-scenario": "busy"}},
                        "answer": {
                            "error": {"status": 429, "headers": {"retry-after": "7"}}
                        },
                    }
                ]
            },
        )
        with self.assertRaises(openai.RateLimitError) as caught:
            await sdk(live, extra_headers={"X-Scenario": "busy"})
        self.assertEqual(caught.exception.response.headers["retry-after"], "7")
        self.assertEqual(caught.exception.code, "rate_limit_exceeded")
        response, payload = await live.json(
            "POST",
            CHAT,
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            headers={"X-Scenario": "busy"},
        )
        self.assertEqual(response.code, 429)
        validate(payload, "ErrorResponse")
        ok = await sdk(live)
        self.assertIn(ok.choices[0].message.content, ORIGINAL_REPLIES)

    async def test_sequence_across_calls_and_times(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "answer": "Only twice.",
                        "times": 2,
                        "match": {"content": "twice"},
                    },
                    {
                        "answer": {
                            "sequence": [
                                {"tool_calls": ["lookup_order"]},
                                "Here is your order.",
                                {"error": 500},
                            ],
                            "then": "cycle",
                        }
                    },
                ]
            },
        )
        first = await sdk(live, tools=[LOOKUP])
        self.assertEqual(
            first.choices[0].message.tool_calls[0].function.name, "lookup_order"
        )
        second = await sdk(live, tools=[LOOKUP])
        self.assertEqual(second.choices[0].message.content, "Here is your order.")
        with self.assertRaises(openai.InternalServerError):
            await sdk(live)
        again = await sdk(live, tools=[LOOKUP])
        self.assertTrue(again.choices[0].message.tool_calls)
        twice = [
            await sdk(live, messages=[{"role": "user", "content": "twice"}])
            for _ in range(3)
        ]
        texts = [r.choices[0].message.content for r in twice]
        self.assertEqual(texts[:2], ["Only twice.", "Only twice."])
        self.assertNotEqual(texts[2], "Only twice.")

    async def test_per_rule_chunking_and_pacing(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "answer": "one two three",
                        "stream": {"chunking": "word", "interval_ms": 0},
                    }
                ]
            },
        )
        response = await live.request(
            "POST",
            CHAT,
            {
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        chunks = [json.loads(p) for p in events(await treq.content(response))[:-1]]
        pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
        self.assertEqual(pieces, ["one", " two", " three"])

    async def test_other_endpoints(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "match": {"endpoint": "completions"},
                        "answer": "legacy {{content}}",
                    },
                    {
                        "match": {"endpoint": "responses"},
                        "answer": "responses {{content}}",
                    },
                    {
                        "match": {"endpoint": "embeddings", "content": "fail"},
                        "answer": {"error": 503},
                    },
                    {
                        "match": {"endpoint": "moderations"},
                        "answer": {"error": {"status": 400, "message": "no"}},
                    },
                ]
            },
        )
        legacy = await post(
            live,
            {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 50},
            "/v1/completions",
        )
        validate(legacy, "CreateCompletionResponse")
        self.assertEqual(legacy["choices"][0]["text"], "legacy hi")
        client = live.sdk()
        response = await deferToThread(
            lambda: client.responses.create(model="gpt-4o", input="ping")
        )
        self.assertEqual(response.output_text, "responses ping")
        vectors = await deferToThread(
            lambda: client.embeddings.create(
                model="text-embedding-3-small", input="fine"
            )
        )
        self.assertEqual(len(vectors.data), 1)
        with self.assertRaises(openai.InternalServerError):
            await deferToThread(
                lambda: client.embeddings.create(
                    model="text-embedding-3-small", input="fail"
                )
            )
        with self.assertRaises(openai.BadRequestError):
            await deferToThread(lambda: client.moderations.create(input="x"))
        chat = await sdk(live)
        self.assertIn(chat.choices[0].message.content, ORIGINAL_REPLIES)

    async def test_azure_uses_the_rules(self) -> None:
        live = await start(
            self,
            {"rules": [{"match": {"model": "my-deploy"}, "answer": "azure {{model}}"}]},
        )
        response, payload = await live.json(
            "POST",
            "/openai/deployments/my-deploy/chat/completions?api-version=2024-10-21",
            {"messages": [{"role": "user", "content": "hi"}]},
            token=None,
            headers={"api-key": "sk-test-0123456789"},
        )
        self.assertEqual(response.code, 200, payload)
        self.assertEqual(payload["choices"][0]["message"]["content"], "azure my-deploy")
