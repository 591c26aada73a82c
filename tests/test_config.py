"""Configuration: the original's file works; every mistake names its key."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from mockai_tw import config_load
from mockai_tw.config import ORIGINAL_REPLIES, ConfigError, HttpConfig, is_secret
from mockai_tw.config_load import MAX_DEPTH, MAX_VALUES, load_config, parse_config
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

    def test_kubernetes_service_links_are_not_settings(self) -> None:
        # What a pod gets for a Service named mockai (enableServiceLinks on).
        links = {
            "MOCKAI_SERVICE_HOST": "10.0.0.1",
            "MOCKAI_SERVICE_PORT": "8082",
            "MOCKAI_SERVICE_PORT_HTTP": "8082",
            "MOCKAI_PORT": "tcp://10.0.0.1:8082",
            "MOCKAI_PORT_8082_TCP": "tcp://10.0.0.1:8082",
            "MOCKAI_PORT_8082_TCP_PROTO": "tcp",
            "MOCKAI_PORT_8082_TCP_PORT": "8082",
            "MOCKAI_PORT_8082_TCP_ADDR": "10.0.0.1",
        }
        config = parse_config({"access_token": "t"}, links)
        self.assertEqual(config.http.port, 8082)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t"}, {"MOCKAI_SERVICE_HOSTS": "x"})
        self.assertIn("unknown setting service_hosts", str(caught.exception))

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

    def test_schema_is_a_leaf(self) -> None:
        # The schema imports no engine module; the loader is what joins them.
        code = (
            "import sys, mockai_tw.config;"
            "print(sorted(m for m in sys.modules if m.startswith('mockai_tw.')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        self.assertNotIn("mockai_tw.engine", out)
        self.assertNotIn("mockai_tw.config_load", out)

    def file_error(
        self, text: str | bytes, environ: dict[str, str] | None = None
    ) -> str:
        path: str = self.mktemp()
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        with self.assertRaises(ConfigError) as caught:
            load_config(path, environ or {})
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        # Without the file's name when the error names a key instead.
        return message.removeprefix(path + ": ")

    def test_deep_nesting_is_one_error(self) -> None:
        base = "access_token: t\n"
        deep = {
            "flow lists": base + "x: " + "[" * 5000 + "]" * 5000 + "\n",
            "flow mappings": base + "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
            "block mappings": base
            + "".join(" " * i + "a:\n" for i in range(3000))
            + " " * 3000
            + "a: 1\n",
        }
        for name, text in deep.items():
            message = self.file_error(text)
            self.assertTrue(
                message.startswith(f"nested deeper than {MAX_DEPTH} levels (line"),
                (name, message),
            )
        # At the bound it parses (and fails on the schema, not on the nesting).
        levels = MAX_DEPTH - 1  # the top-level mapping is the first level
        at_bound = base + "x: " + "[" * levels + "]" * levels + "\n"
        self.assertTrue(self.file_error(at_bound).startswith("x: unknown key"))
        over = base + "x: " + "[" * (levels + 1) + "]" * (levels + 1) + "\n"
        self.assertIn("nested deeper than", self.file_error(over))

    def test_aliases_are_bounded(self) -> None:
        # Each alias counts every time it is used ("billion laughs").
        lines = ["access_token: t", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)
        ]
        message = self.file_error("\n".join(lines) + "\n")
        self.assertEqual(
            message,
            f"has more than {MAX_VALUES:,} values"
            " (an alias counts each time it is used)",
        )
        # An alias inside its own anchor nests forever.
        message = self.file_error("access_token: t\nx: &loop [*loop]\n")
        self.assertEqual(message, f"nested deeper than {MAX_DEPTH} levels")
        # Small aliases are fine (merge keys included).
        config = load_config(
            self.write(
                "access_token: t\n"
                "timing:\n"
                "  models:\n"
                "    gpt-4o: &m {ttft: {ms: 5}}\n"
                "    gpt-4o-mini: {<<: *m, itl: {ms: 1}}\n"
            ),
            {},
        )
        mini = config.timing.models["gpt-4o-mini"]
        assert mini.ttft is not None and mini.itl is not None
        self.assertEqual((mini.ttft.ms, mini.itl.ms), (5.0, 1.0))

    def test_deep_values_given_as_data(self) -> None:
        deep: Any = 1
        for _ in range(5000):
            deep = [deep]
        self.assertEqual(
            self.error({"access_token": "t", "replies": deep}),
            f"nested deeper than {MAX_DEPTH} levels",
        )
        message = self.error(
            {"access_token": "t"},
            {"MOCKAI_STREAM__INTERVAL_MS": "[" * 5000 + "]" * 5000},
        )
        self.assertTrue(
            message.startswith(
                f"MOCKAI_STREAM__INTERVAL_MS: nested deeper than {MAX_DEPTH}"
            ),
            message,
        )

    def test_every_file_failure_is_one_line(self) -> None:
        cases: list[tuple[str | bytes, str]] = [
            ("- access_token: t\n", "the top level must be a mapping, got a list"),
            ("sk-secret-0123456789\n", "the top level must be a mapping, got a string"),
            (b"access_token: t\nreplies: [caf\xe9]\n", "is not UTF-8 text (line 2)"),
            ("access_token: t\n\x07\n", "not valid YAML (line 2, column 1): special"),
            ("access_token: !!python/object:os.system x\n", "not valid YAML (line 1"),
            ("access_token: t\n---\naccess_token: u\n", "not valid YAML (line 2"),
            ("? [a]\n: 1\n", "not valid YAML (line 1"),
            ("access_token: *nope\n", "not valid YAML (line 1"),
        ]
        for text, expected in cases:
            message = self.file_error(text)
            self.assertTrue(message.startswith(expected), (text, message))
        self.assertNotIn("0123456789", self.file_error("sk-secret-0123456789\n"))
        directory = self.mktemp()
        os.makedirs(directory)
        with self.assertRaises(ConfigError) as caught:
            load_config(directory, {})
        self.assertEqual(
            str(caught.exception), f"{directory}: cannot read: Is a directory"
        )
        with self.assertRaises(ConfigError) as caught:
            load_config("config\0.yaml", {})
        self.assertIn("cannot read", str(caught.exception))

    def test_file_size_is_bounded(self) -> None:
        self.patch(config_load, "MAX_CONFIG_BYTES", 64)
        message = self.file_error("access_token: t\n" + "# padding\n" * 10)
        self.assertEqual(message, "is larger than 64 bytes")
        config = load_config(self.write("access_token: t\n"), {})
        self.assertEqual(config.tokens, ("t",))

    def test_unreadable_file(self) -> None:
        if os.getuid() == 0:
            raise SkipTest("root reads any file")
        path = self.write(ORIGINAL)
        os.chmod(path, 0)
        with self.assertRaises(ConfigError) as caught:
            load_config(path, {})
        self.assertEqual(
            str(caught.exception), f"{path}: cannot read: Permission denied"
        )

    def test_secrets_are_never_echoed(self) -> None:
        secret = "98765432109876543210"
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"admin_token": int(secret)},
                "admin_token: must be a string, got a number",
            ),
            (
                {"access_token": float(secret)},
                "access_token: must be a string, got a number",
            ),
            (
                {"access_tokens": int(secret)},
                "access_tokens: must be a list, got a number",
            ),
            (
                {"access_tokens": ["ok", int(secret)]},
                "access_tokens[1]: must be a string, got a number",
            ),
            ({"access_token": True}, "access_token: must be a string, got a boolean"),
        ]
        for raw, expected in cases:
            message = self.error({"accept_any_token": True, **raw})
            self.assertEqual(message, expected)
            self.assertNotIn(secret[:8], message)
        message = self.file_error(f"admin_token: {secret}\naccess_token: t\n")
        self.assertEqual(message, "admin_token: must be a string, got a number")
        # From the environment: a token is taken as the text it is.
        config = parse_config(
            {"access_token": "t", "admin_token": int(secret)},
            {"MOCKAI_ADMIN_TOKEN": secret},
        )
        self.assertEqual(config.admin_token, secret)
        # Other values are still named, so a mistake is easy to find.
        self.assertIn(
            "got the number 1.5", self.error({"access_token": "t", "seed": 1.5})
        )

    def test_secret_keys(self) -> None:
        for key in (
            "access_token",
            "access_tokens",
            "admin_token",
            "api_key",
            "redis_password",
            "password",
            "refresh_token",
            "ADMIN_TOKEN",
            "token",
        ):
            self.assertTrue(is_secret(key), key)
        for key in (
            "tokens_per_minute",
            "max_tokens",
            "keys",
            "models",
            "seed",
            "header",
            "kinds",
        ):
            self.assertFalse(is_secret(key), key)

    def test_readme_states_the_bounds(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        self.assertEqual(config_load.MAX_CONFIG_BYTES, 16 * 1024 * 1024)
        self.assertIn("| file size | 16 MiB |", readme)
        self.assertIn(f"| {MAX_DEPTH} levels |", readme)
        self.assertIn(f"| {MAX_VALUES:,} |", readme)
        http = {f.name: f for f in dataclasses.fields(HttpConfig)}
        for name in ("request_timeout_s", "idle_timeout_s", "max_connections"):
            row = next(
                line
                for line in readme.splitlines()
                if line.startswith(f"| `http.{name}`")
            )
            self.assertIn(f"`{http[name].default:g}`", row, name)
            for bound in http[name].metadata.values():
                self.assertIn(f"{bound:.0f}", row, name)
