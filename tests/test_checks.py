"""The shared value checks, and how each domain words the same Problem.

Pure: no listener, no files.  The config and the rules say ``path: must be
..., got ...``; a request gets OpenAI's sentence, param and code.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mockai_tw import checks
from mockai_tw.checks import Problem
from mockai_tw.config import ConfigError, build_config
from mockai_tw.engine.rules import RuleError
from mockai_tw.errors import ApiError
from mockai_tw.request.common import as_api_error
from tests.test_layers import loaded, ours


def problem(check: Any, value: Any, path: str = "x", **options: Any) -> Problem:
    try:
        check(value, path, **options)
    except Problem as caught:
        return caught
    raise AssertionError(f"{check.__name__}({value!r}) passed")


def config_line(p: Problem, secret: bool = False) -> str:
    return str(ConfigError.of(p, secret))


def rule_line(p: Problem) -> str:
    return str(RuleError.of(p))


def request(p: Problem) -> tuple[str, str | None, str | None]:
    error = as_api_error(p)
    return error.message, error.param, error.code


class WordingTests(SynchronousTestCase):
    """One Problem, as the config, the rules and a request each word it."""

    def test_integer_below_its_range(self) -> None:
        p = problem(checks.integer, 0, "n", ge=1, le=128)
        self.assertEqual((p.expected, p.got, p.bound), (checks.AT_LEAST, 0, 1))
        self.assertEqual(config_line(p), "n: must be >= 1")
        self.assertEqual(rule_line(p), "n: must be between 1 and 128")
        self.assertEqual(
            request(p),
            (
                "Invalid 'n': integer below minimum value. Expected a value >= 1,"
                " but got 0 instead.",
                "n",
                "integer_below_min_value",
            ),
        )

    def test_number_above_its_range(self) -> None:
        p = problem(checks.number, 2.5, "top_p", ge=0, le=1)
        self.assertEqual(config_line(p), "top_p: must be <= 1")
        self.assertEqual(rule_line(p), "top_p: must be between 0 and 1")
        self.assertEqual(
            request(p),
            (
                "Invalid 'top_p': 2.5 is greater than the maximum of 1.",
                "top_p",
                "invalid_value",
            ),
        )

    def test_wrong_type(self) -> None:
        p = problem(checks.string, 1, "user")
        self.assertEqual(config_line(p), "user: must be a string, got the number 1")
        self.assertEqual(rule_line(p), "user: must be a string, got the number 1")
        self.assertEqual(
            request(p),
            (
                "Invalid type for 'user': expected a string, but got an integer"
                " instead.",
                "user",
                "invalid_type",
            ),
        )

    def test_a_secret_is_named_by_its_kind_only(self) -> None:
        p = problem(checks.string, 12345, "admin_token")
        self.assertEqual(
            config_line(p, secret=True), "admin_token: must be a string, got a number"
        )
        p = problem(checks.one_of, "sk-live", "mode", choices=("a", "b"))
        self.assertNotIn("sk-live", config_line(p, secret=True))

    def test_one_of(self) -> None:
        p = problem(checks.one_of, "x", "order", choices=("asc", "desc"))
        self.assertEqual(config_line(p), "order: must be one of asc, desc; got 'x'")
        self.assertEqual(rule_line(p), config_line(p))
        self.assertEqual(
            request(p),
            (
                "Invalid value: 'x'. Supported values are: 'asc', 'desc'.",
                "order",
                "invalid_value",
            ),
        )

    def test_counts(self) -> None:
        empty = problem(checks.array, [], "messages", min_items=1)
        self.assertEqual(config_line(empty), "messages: must have at least 1 item")
        self.assertEqual(request(empty)[2], "empty_array")
        long = problem(checks.array, [1, 2, 3], "stop", max_items=2)
        self.assertEqual(request(long)[2], "array_above_max_length")
        wide = problem(checks.mapping, {"a": 1, "b": 2}, "metadata", max_items=1)
        self.assertEqual(request(wide)[2], "object_above_max_properties")

    def test_a_key_not_a_string(self) -> None:
        # The config names the key by its path; the rules show it.
        key = problem(checks.string_key, 1, "timing.models.1")
        self.assertEqual(config_line(key), "timing.models.1: keys must be a string")
        rules = problem(checks.mapping, {1: 2}, "rules[0].match", string_keys=True)
        self.assertEqual(
            rule_line(rules), "rules[0].match: keys must be strings, got the number 1"
        )


class CheckTests(SynchronousTestCase):
    def test_values_come_back_typed(self) -> None:
        self.assertEqual(checks.integer(3, "x", ge=0), 3)
        self.assertIs(type(checks.number(3, "x")), float)
        self.assertIs(type(checks.integer(16.0, "x", whole_floats=True)), int)
        self.assertEqual(checks.string(" ", "x", nonempty=True), " ")

    def test_a_bool_is_no_number(self) -> None:
        self.assertEqual(problem(checks.integer, True).expected, checks.INTEGER)
        self.assertEqual(problem(checks.number, False).expected, checks.NUMBER)

    def test_whole_floats(self) -> None:
        # Out of range or fractional, a float is no integer at all (OpenAI).
        self.assertEqual(problem(checks.integer, 16.0).expected, checks.INTEGER)
        for value in (1.5, 300.0):
            p = problem(checks.integer, value, le=100, whole_floats=True)
            self.assertTrue(p.wrong_type)

    def test_not_finite(self) -> None:
        for value in (float("nan"), float("inf"), 10**400):
            self.assertEqual(problem(checks.number, value).expected, checks.FINITE)
        # NaN breaks every bound when finiteness is not asked for.
        nan = problem(checks.number, float("nan"), ge=0, le=1, finite=False)
        self.assertIn(nan.expected, checks.RANGE)

    def test_an_int_past_any_float_is_a_config_line(self) -> None:
        # It used to escape float() as an OverflowError, with a traceback.
        with self.assertRaises(ConfigError) as caught:
            build_config({"access_token": "t", "faults": {"kinds": {"stall": 10**400}}})
        self.assertEqual(
            str(caught.exception), "faults.kinds.stall: must be a finite number"
        )

    def test_rules_say_between_for_any_number_outside(self) -> None:
        p = problem(checks.number, float("nan"), "p", ge=0, le=1)
        self.assertEqual(rule_line(p), "p: must be between 0 and 1")
        self.assertEqual(config_line(p), "p: must be a finite number")

    def test_strings(self) -> None:
        self.assertEqual(
            problem(checks.string, "", nonempty=True).expected, "non-empty"
        )
        blank = problem(checks.string, "  ", nonempty=True, strip=True)
        self.assertEqual(config_line(blank), "x: must not be empty")

    def test_known_keys_name_the_key(self) -> None:
        p = problem(checks.known_keys, {"a": 1, "tiems": 2}, "rules[3]", known=("a",))
        self.assertEqual(p.path, "rules[3].tiems")
        self.assertEqual(rule_line(p), "rules[3].tiems: unknown key (known keys: a)")
        top = problem(checks.known_keys, {"bogus": 1}, "", known=("http", "seed"))
        self.assertEqual(
            config_line(top), "bogus: unknown key (known keys: http, seed)"
        )

    def test_a_phrase_is_said_as_given(self) -> None:
        p = Problem("rules[0].answer.choices", "a non-empty list", [])
        self.assertEqual(
            rule_line(p),
            "rules[0].answer.choices: must be a non-empty list, got a list",
        )
        self.assertEqual(str(p), rule_line(p))

    def test_worded_by(self) -> None:
        @checks.worded_by(as_api_error)
        def parse(value: Any) -> bool:
            return checks.boolean(value, "stream")

        self.assertTrue(parse(True))
        error = self.assertRaises(ApiError, parse, "yes")
        self.assertEqual((error.param, error.code), ("stream", "invalid_type"))

    def test_a_leaf(self) -> None:
        self.assertEqual(
            ours(loaded("mockai_tw.checks")) - {"mockai_tw"}, {"mockai_tw.checks"}
        )
