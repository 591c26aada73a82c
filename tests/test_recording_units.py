"""The pure parts of record and replay, without a socket."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial.unittest import TestCase

from mockai_tw.config import ConfigError
from mockai_tw.config_load import load_config, parse_config
from mockai_tw.engine.rules import parse_rule
from mockai_tw.recording.files import (
    Event,
    Recording,
    RecordingError,
    load_dir,
    next_name,
    save,
    slug,
)
from mockai_tw.recording.keys import parsed_body
from mockai_tw.recording.paths import PathError, drop, parse_path
from mockai_tw.recording.policy import Policy
from mockai_tw.recording.promote import promote, recorded_text
from mockai_tw.recording.providers import ANTHROPIC, OPENAI, provider_for
from mockai_tw.recording.replay import Book, Fresh, miss_message, replay_events
from mockai_tw.web.proxy import upstream_url
from tests.support import write_config

CHAT = "/v1/chat/completions"


def key(body: Any, policy: Policy | None = None, path: str = CHAT) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (policy or Policy.of()).key("POST", path, data, OPENAI).canonical


def recording(
    directory: str,
    body: Any,
    events: tuple[Event, ...] = (),
    answer: bytes = b"",
    policy: Policy | None = None,
) -> Recording:
    data = json.dumps(body).encode()
    k = (policy or Policy.of()).key("POST", CHAT, data, OPENAI)
    file, seq = next_name(directory, slug(CHAT, "hi"), k.digest)
    return Recording(
        id=os.path.basename(file)[:-5],
        file=file,
        key=k,
        seq=seq,
        method="POST",
        path=CHAT,
        query="",
        request_headers={"content-type": "application/json"},
        request_body=data,
        status=200,
        headers=(
            ("content-type", "text/event-stream" if events else "application/json"),
        ),
        body=answer,
        events=events,
        duration_ms=12.5,
    )


class MatchKeyTests(TestCase):
    def test_key_order_and_whitespace_do_not_matter(self) -> None:
        a = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        spaced = (
            b'{ "messages" : [ {"content":"hi", "role":"user"} ],\n "model":"gpt-4o" }'
        )
        self.assertEqual(key(a), key(spaced))

    def test_volatile_fields_are_dropped(self) -> None:
        base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        noisy = {
            **base,
            "user": "u-1",
            "metadata": {"run": "7"},
            "seed": 3,
            "stream_options": {"include_usage": True},
        }
        self.assertEqual(key(base), key(noisy))
        tools = [
            {"role": "assistant", "tool_calls": [{"id": "call_A", "type": "function"}]},
            {"role": "tool", "tool_call_id": "call_A", "content": "42"},
        ]
        other = [
            {"role": "assistant", "tool_calls": [{"id": "call_B", "type": "function"}]},
            {"role": "tool", "tool_call_id": "call_B", "content": "42"},
        ]
        self.assertEqual(
            key({**base, "messages": tools}), key({**base, "messages": other})
        )

    def test_what_matters_is_kept(self) -> None:
        base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        self.assertNotEqual(key(base), key({**base, "stream": True}))
        self.assertNotEqual(key(base), key({**base, "model": "gpt-4.1"}))
        self.assertNotEqual(key(base), key(base, path="/v1/responses"))
        changed = {**base, "messages": [{"role": "user", "content": "ho"}]}
        self.assertNotEqual(key(base), key(changed))

    def test_ignore_fields(self) -> None:
        policy = Policy.of(ignore_fields=["messages[*].name", "temperature"])
        a = {
            "messages": [{"role": "user", "content": "hi", "name": "a"}],
            "temperature": 1,
        }
        b = {"messages": [{"role": "user", "content": "hi", "name": "b"}]}
        self.assertEqual(key(a, policy), key(b, policy))
        self.assertNotEqual(key(a), key(b))

    def test_not_json_is_keyed_by_its_bytes(self) -> None:
        self.assertEqual(key(b"{nope"), key(b"{nope"))
        self.assertNotEqual(key(b"{nope"), key(b"{nah"))

    def test_paths(self) -> None:
        self.assertEqual(parse_path("a.b[*].c[0]"), ("a", "b", "[*]", "c", 0))
        for bad in ("", "a..b", " a", "a[x]"):
            self.assertRaises(PathError, parse_path, bad)
        value = {"a": [{"b": 1, "c": 2}, {"b": 3}], "d": {"e": 1, "f": 2}}
        self.assertEqual(
            drop(value, parse_path("a[*].b")), {"a": [{"c": 2}, {}], "d": value["d"]}
        )
        self.assertEqual(drop(value, parse_path("d.*")), {"a": value["a"], "d": {}})
        self.assertEqual(drop(value, parse_path("a[1]"))["a"], [{"b": 1, "c": 2}])
        self.assertEqual(drop(value, parse_path("x.y")), value)


class RedactionTests(TestCase):
    def test_headers_and_bodies(self) -> None:
        policy = Policy.of(redact=[r"sk-[A-Za-z0-9]+"], redact_headers=["X-Org"])
        kept = policy.header_map(
            [
                ("Authorization", "Bearer sk-abc"),
                ("api-key", "k"),
                ("X-API-Key", "k"),
                ("Cookie", "c"),
                ("Set-Cookie", "c"),
                ("x-org", "o"),
                ("Content-Type", "application/json"),
                ("X-Note", "see sk-abc123"),
            ]
        )
        self.assertEqual(
            kept, {"content-type": "application/json", "x-note": "see [redacted]"}
        )
        self.assertEqual(policy.body(b'{"k": "sk-XYZ"}'), b'{"k": "[redacted]"}')
        # The redacted body is what a request is keyed by, on both sides.
        self.assertEqual(
            key({"content": "sk-one"}, policy), key({"content": "sk-two"}, policy)
        )


class FileTests(TestCase):
    def test_round_trip_is_byte_exact(self) -> None:
        directory = os.path.abspath(self.mktemp())
        events = (
            Event(80.25, b'data: {"a":1}\n\n'),
            Event(120.0, b"event: x\r\ndata: \xff\xfe\r\n\r\n"),
        )
        rec = recording(directory, {"model": "gpt-4o", "stream": True}, events)
        save(rec)
        body = recording(directory, {"model": "gpt-4o"}, answer=b'{\n  "id": "x"\n}\n')
        save(body)
        (a, b) = sorted(load_dir(directory, Policy.of()), key=lambda r: r.streamed)
        self.assertEqual(b.events, events)
        self.assertEqual(a.body, b'{\n  "id": "x"\n}\n')
        self.assertEqual(b.key, rec.key)
        self.assertEqual(
            os.path.basename(rec.file).split("-")[:3], ["chat", "completions", "hi"]
        )
        with open(rec.file, encoding="utf-8") as f:
            doc = json.load(f)
        self.assertEqual(doc["mockai_recording"], 1)
        self.assertIn("data_base64", doc["response"]["events"][1])

    def test_sequence_numbers(self) -> None:
        directory = os.path.abspath(self.mktemp())
        first = recording(directory, {"model": "gpt-4o"}, answer=b"{}")
        save(first)
        second = recording(directory, {"model": "gpt-4o"}, answer=b"[]")
        self.assertEqual((first.seq, second.seq), (1, 2))
        self.assertTrue(second.file.endswith("-002.json"))

    def test_a_broken_file_names_its_path_and_reason(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        bad = os.path.join(directory, "bad-000000000000-001.json")
        for content, reason in (
            ("{not json", "not valid JSON/YAML"),
            ('{"mockai_recording": 2}', "mockai_recording: must be 1"),
            (
                '{"mockai_recording": 1,'
                ' "request": {"method": "POST", "path": "/v1/x"},'
                ' "response": {"status": 99}}',
                "response.status: must be an HTTP status",
            ),
        ):
            with open(bad, "w", encoding="utf-8") as f:
                f.write(content)
            with self.assertRaises(RecordingError) as caught:
                load_dir(directory, Policy.of())
            self.assertEqual(caught.exception.path, bad)
            self.assertIn(reason, caught.exception.reason)
            # As a config error: the start stops with the path and the reason.
            path = write_config(
                self,
                {
                    "access_token": "t",
                    "recording": {"mode": "replay", "dir": directory},
                },
            )
            with self.assertRaises(ConfigError) as config_error:
                load_config(path, {})
            self.assertIn(bad, str(config_error.exception))
            self.assertIn(reason, str(config_error.exception))


class BookTests(TestCase):
    def test_sequence_then_the_last_repeats_and_hits(self) -> None:
        directory = os.path.abspath(self.mktemp())
        one = recording(directory, {"m": 1}, answer=b"1")
        save(one)
        two = recording(directory, {"m": 1}, answer=b"2")
        book = Book([one, two])
        taken = [book.take(one.key) for _ in range(3)]
        self.assertEqual([t.body for t in taken if t], [b"1", b"2", b"2"])
        self.assertEqual(book.hits, {one.id: 1, two.id: 2})

    def test_a_miss_names_the_key_and_the_closest(self) -> None:
        directory = os.path.abspath(self.mktemp())
        near = recording(directory, {"messages": [{"content": "hello there"}]})
        far = recording(directory, {"input": "x"}, policy=None)
        far = Recording(
            **{
                **far.__dict__,
                "id": "far",
                "path": "/v1/embeddings",
                "key": Policy.of().key("POST", "/v1/embeddings", b"{}", OPENAI),
            }
        )
        book = Book([far, near])
        asked = Policy.of().key(
            "POST", CHAT, b'{"messages": [{"content": "hello their"}]}', OPENAI
        )
        self.assertIsNone(book.take(asked))
        self.assertIs(book.closest(asked), near)
        message = miss_message(asked, near, 2)
        self.assertIn(asked.describe(), message)
        self.assertIn(near.id, message)
        self.assertIn("There are no recordings", miss_message(asked, None, 0))


class FreshTests(TestCase):
    def test_ids_and_created_are_renewed_consistently(self) -> None:
        fresh = Fresh(2_000_000_000, token=lambda n: "N" * n)
        a = fresh(
            b'{"id":"chatcmpl-abc123","created":1732440000,"x":"chatcmpl-abc123"}'
        )
        b = fresh(
            b'{"id": "chatcmpl-abc123", "created": 1732440005, "item_id":"msg_77"}'
        )
        self.assertEqual(
            a, b'{"id":"chatcmpl-NNNNNN","created":2000000000,"x":"chatcmpl-abc123"}'
        )
        self.assertEqual(
            b, b'{"id": "chatcmpl-NNNNNN", "created": 2000000005, "item_id":"msg_NNNN"}'
        )

    def test_replay_offsets_scale_with_speed(self) -> None:
        rec = recording(
            os.path.abspath(self.mktemp()),
            {},
            (Event(100.0, b"a"), Event(300.0, b"b")),
        )
        self.assertEqual(
            list(replay_events(rec, 1.0, 0.0, None)), [(0.1, b"a"), (0.3, b"b")]
        )
        self.assertEqual(
            list(replay_events(rec, 10.0, 0.0, None)), [(0.01, b"a"), (0.03, b"b")]
        )
        self.assertEqual(
            list(replay_events(rec, 0.0, 0.0, None)), [(0.0, b"a"), (0.0, b"b")]
        )
        # Time already spent before delivery started is not spent twice.
        self.assertEqual(next(iter(replay_events(rec, 1.0, 0.05, None))), (0.05, b"a"))


class PromoteTests(TestCase):
    def test_a_stream_becomes_a_rule_that_parses(self) -> None:
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {"content": "Hi "}}]},
            {"choices": [{"index": 0, "delta": {"content": "there"}}]},
        ]
        events = (
            *(
                Event(10.0 * (i + 1), b"data: " + json.dumps(c).encode() + b"\n\n")
                for i, c in enumerate(chunks)
            ),
            Event(40.0, b"data: [DONE]\n\n"),
        )
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Greet"}]}
        rec = recording(os.path.abspath(self.mktemp()), body, events)
        self.assertEqual(recorded_text(rec), "Hi there")
        rule = promote(rec)
        self.assertEqual(
            rule["match"],
            {"endpoint": "chat", "model": "gpt-4o", "content": {"equals": "Greet"}},
        )
        self.assertEqual(rule["answer"], {"text": "Hi there"})
        self.assertEqual(rule["stream"], {"ttft_ms": 10.0, "interval_ms": 10.0})
        parse_rule(rule, "rule", None)

    def test_an_error_becomes_an_error_rule(self) -> None:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        rec = recording(
            os.path.abspath(self.mktemp()),
            body,
            answer=json.dumps(
                {
                    "error": {
                        "message": "slow down",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                }
            ).encode(),
        )
        rec = Recording(**{**rec.__dict__, "status": 429})
        rule = promote(rec)
        self.assertEqual(
            rule["answer"],
            {
                "error": {
                    "status": 429,
                    "message": "slow down",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
        )
        parse_rule(rule, "rule", None)


class ProviderTests(TestCase):
    def test_routes(self) -> None:
        self.assertEqual(provider_for("/v1/messages").name, "anthropic")
        self.assertEqual(
            provider_for("/v1beta/models/g:generateContent").name, "gemini"
        )
        self.assertEqual(
            provider_for("/openai/deployments/d/chat/completions").name, "azure"
        )
        self.assertEqual(provider_for(CHAT).name, "openai")
        self.assertTrue(OPENAI.keeps("X-RateLimit-Limit-Requests"))
        self.assertFalse(OPENAI.keeps("set-cookie"))
        self.assertTrue(ANTHROPIC.keeps("anthropic-ratelimit-requests-limit"))

    def test_upstream_url(self) -> None:
        self.assertEqual(
            upstream_url("https://api.openai.com/v1", b"/v1/chat/completions"),
            b"https://api.openai.com/v1/chat/completions",
        )
        self.assertEqual(
            upstream_url(
                "http://h:1/", b"/v1beta/models/m:streamGenerateContent?alt=sse"
            ),
            b"http://h:1/v1beta/models/m:streamGenerateContent?alt=sse",
        )
        self.assertEqual(
            upstream_url(
                "https://r.openai.azure.com",
                b"/openai/deployments/d/embeddings?api-version=1",
            ),
            b"https://r.openai.azure.com/openai/deployments/d/embeddings?api-version=1",
        )
        self.assertEqual(parsed_body(b""), None)


class ConfigTests(TestCase):
    def refused(self, raw: dict[str, Any]) -> str:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", **raw}, {})
        return str(caught.exception)

    def test_errors_name_the_key(self) -> None:
        self.assertEqual(
            self.refused({"recording": {"mode": "recrod"}}).split(":")[0],
            "recording.mode",
        )
        self.assertIn("recording.speed", self.refused({"recording": {"speed": -1}}))
        self.assertIn(
            "upstream.base_url: required when recording.mode is record",
            self.refused({"recording": {"mode": "record"}}),
        )
        self.assertIn(
            "upstream.base_url: must be an http",
            self.refused({"upstream": {"base_url": "ftp://x"}}),
        )
        self.assertIn(
            "recording.redact[0]: invalid regex",
            self.refused({"recording": {"redact": ["("]}}),
        )
        self.assertIn(
            "recording.ignore_fields[0]",
            self.refused({"recording": {"ignore_fields": ["a..b"]}}),
        )
        self.assertIn("recording.colour", self.refused({"recording": {"colour": 1}}))
        self.assertIn("recordings: not a setting", self.refused({"recordings": []}))

    def test_replay_from_a_missing_directory_is_refused(self) -> None:
        path = write_config(
            self, {"access_token": "t", "recording": {"mode": "replay", "dir": "nope"}}
        )
        with self.assertRaises(ConfigError) as caught:
            load_config(path, {})
        self.assertRegex(
            str(caught.exception), r"^recording\.dir: .*nope does not exist"
        )
        # replay_or_record makes it on the first miss.
        environ = {
            "MOCKAI_RECORDING__MODE": "replay_or_record",
            "MOCKAI_UPSTREAM__BASE_URL": "http://127.0.0.1:9/v1",
        }
        self.assertEqual(load_config(path, environ).recordings, ())

    def test_dir_is_relative_to_the_config_file(self) -> None:
        path = write_config(
            self, {"access_token": "t", "recording": {"mode": "replay", "dir": "recs"}}
        )
        os.makedirs(os.path.join(os.path.dirname(os.path.abspath(path)), "recs"))
        config = load_config(path, {})
        self.assertEqual(
            config.recording.dir,
            os.path.join(os.path.dirname(os.path.abspath(path)), "recs"),
        )
        self.assertEqual(config.recordings, ())
        self.assertEqual(
            load_config(path, {"MOCKAI_RECORDING__SPEED": "4"}).recording.speed, 4.0
        )


class QueryKeyTests(TestCase):
    def test_a_key_parameter_never_goes_upstream_or_to_a_file(self) -> None:
        from mockai_tw.web.proxy import _safe_query, _without_key

        uri = b"/v1beta/models/m:streamGenerateContent?alt=sse&key=sk-mock"
        self.assertEqual(
            _without_key(uri), b"/v1beta/models/m:streamGenerateContent?alt=sse"
        )
        self.assertEqual(_without_key(b"/v1/x?key=k"), b"/v1/x")
        self.assertEqual(_without_key(b"/v1/x"), b"/v1/x")
        self.assertEqual(_safe_query(uri), "alt=sse&key=%5Bredacted%5D")
