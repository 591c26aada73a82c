"""Configuration: the original's file works; every mistake names its key."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES, ConfigError, load_config, parse_config
from mockai_tw.tap import configure
from tests.openapi import ROOT

ORIGINAL = """\
http:
  host: 0.0.0.0
  port: 8082
  mode: release
access_token: sk-original
"""


class ConfigTests(TestCase):
    def write(self, text: str) -> str:
        path: str = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def error(self, raw: Any, environ: dict[str, str] | None = None) -> str:
        with self.assertRaises(ConfigError) as caught:
            parse_config(raw, environ or {})
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        return message

    def test_original_go_config_unchanged(self) -> None:
        config = load_config(self.write(ORIGINAL), {})
        self.assertEqual(
            config.http.endpoint, "tcp:port=8082:interface=0.0.0.0:backlog=1024"
        )
        self.assertEqual(config.tokens, ("sk-original",))
        self.assertEqual(config.replies, ORIGINAL_REPLIES)
        self.assertEqual(config.stream.chunking, "char")
        self.assertEqual(config.stream.interval_ms, 100.0)
        self.assertFalse(config.http.log_requests)

    def test_bundled_config_loads(self) -> None:
        config = load_config(str(ROOT / "config.yaml"), {})
        self.assertTrue(config.stream.content_filter_results)
        self.assertEqual(config.http.port, 8082)
        self.assertIn("gpt-4o-mini", config.models)

    def test_mode_debug_turns_access_log_on(self) -> None:
        config = parse_config({"access_token": "t", "http": {"mode": "debug"}}, {})
        self.assertTrue(config.http.log_requests)
        config = parse_config(
            {"access_token": "t", "http": {"mode": "debug", "access_log": False}}, {}
        )
        self.assertFalse(config.http.log_requests)

    def test_errors_name_the_key_path(self) -> None:
        base = {"access_token": "t"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"stream": {"interval_ms": -1}}, "stream.interval_ms: must be >= 0"),
            (
                {"stream": {"interval_ms": "fast"}},
                "stream.interval_ms: must be a number",
            ),
            ({"stream": {"tick_ms": 0}}, "stream.tick_ms: must be > 0"),
            (
                {"stream": {"chunking": "line"}},
                "stream.chunking: must be one of char, word, token",
            ),
            ({"stream": {"speed": 1}}, "stream.speed: unknown key"),
            ({"stream": [1]}, "stream: must be a mapping"),
            ({"http": {"port": 70000}}, "http.port: must be <= 65535"),
            ({"http": {"port": "8082"}}, "http.port: must be an integer"),
            (
                {"http": {"mode": "fast"}},
                "http.mode: must be one of debug, release, test",
            ),
            ({"http": {"max_body_bytes": 10}}, "http.max_body_bytes: must be >= 1024"),
            ({"http": {"access_log": "yes"}}, "http.access_log: must be a boolean"),
            ({"replies": []}, "replies: must have at least 1 item"),
            ({"replies": ["ok", ""]}, "replies[1]: must not be empty"),
            ({"replies": ["ok", 3]}, "replies[1]: must be a string"),
            ({"models": "gpt-4o"}, ""),  # a single string is a one-item list
            ({"access_tokens": [""]}, "access_tokens[0]: must not be empty"),
            ({"seed": 1.5}, "seed: must be an integer"),
            ({"bogus": 1}, "bogus: unknown key"),
        ]
        for extra, expected in cases:
            raw = {**base, **extra}
            if not expected:
                self.assertEqual(parse_config(raw, {}).models, ("gpt-4o",))
                continue
            self.assertTrue(
                self.error(raw).startswith(expected), (extra, self.error(raw))
            )

    def test_token_required(self) -> None:
        self.assertIn("access_token: required", self.error({}))
        self.assertIn(
            "access_token: must not be empty", self.error({"access_token": " "})
        )
        config = parse_config({"accept_any_token": True}, {})
        self.assertEqual(config.tokens, ())
        config = parse_config({"access_token": "a", "access_tokens": ["b", "a"]}, {})
        self.assertEqual(config.tokens, ("a", "b"))

    def test_top_level_must_be_a_mapping(self) -> None:
        self.assertIn("must be a mapping", self.error([1, 2]))
        self.assertIn("access_token: required", self.error(None))

    def test_file_errors(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_config(self.write("http: [\n  port: 1\n"), {})
        self.assertIn("not valid YAML (line", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            load_config("/nonexistent/mockai.yaml", {})
        self.assertIn("/nonexistent/mockai.yaml: cannot read", str(caught.exception))

    def test_environment_overrides(self) -> None:
        environ = {
            "MOCKAI_LISTEN": "tcp:9000",
            "MOCKAI_ACCESS_TOKEN": "12345",
            "MOCKAI_ACCESS_TOKENS": "sk-a, sk-b",
            "MOCKAI_STREAM__INTERVAL_MS": "0",
            "MOCKAI_HTTP__PORT": "9001",
            "MOCKAI_STREAM__CONTENT_FILTER_RESULTS": "true",
            "MOCKAI_CONFIG": "ignored-here.yaml",
            "OTHER": "x",
        }
        config = load_config(self.write(ORIGINAL), environ)
        self.assertEqual(config.http.endpoint, "tcp:9000")
        self.assertEqual(config.http.port, 9001)
        self.assertEqual(config.tokens, ("12345", "sk-a", "sk-b"))
        self.assertEqual(config.stream.interval_ms, 0.0)
        self.assertTrue(config.stream.content_filter_results)
        self.assertIn(
            "MOCKAI_NOPE: unknown setting nope", self.error({}, {"MOCKAI_NOPE": "1"})
        )
        self.assertIn(
            "stream.interval_ms: must be >= 0",
            self.error({"access_token": "t"}, {"MOCKAI_STREAM__INTERVAL_MS": "-5"}),
        )

    def test_listen_option_wins(self) -> None:
        path = self.write(ORIGINAL)
        config = configure(
            {"config": path, "listen": "tcp:port=1234:interface=127.0.0.1"},
            {"MOCKAI_LISTEN": "tcp:9000"},
        )
        self.assertEqual(config.http.endpoint, "tcp:port=1234:interface=127.0.0.1")
        config = configure({"config": None}, {"MOCKAI_CONFIG": path})
        self.assertEqual(config.tokens, ("sk-original",))
