"""The ``mockai`` pytest fixture (entry point ``pytest11``), as a user meets it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.testing import MockAI

MESSAGES: list[Any] = [{"role": "user", "content": "Where is my refund?"}]


def ask(mockai: MockAI, **kw: Any) -> Any:
    client = mockai.client()
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("messages", MESSAGES)
    return client.chat.completions.create(**kw)


def test_default_answer_is_a_canned_reply(mockai: MockAI) -> None:
    reply = ask(mockai)
    assert reply.choices[0].message.content in ORIGINAL_REPLIES
    assert mockai.base_url.startswith("http://127.0.0.1:")
    assert mockai.base_url.endswith("/v1")


def test_readme_example(mockai: MockAI) -> None:
    """The README's example, verbatim."""
    mockai.add_rule(match={"content": "refund"}, answer="Refund issued.")
    client = openai.OpenAI(base_url=mockai.base_url, api_key=mockai.api_key)
    ask: Any = [{"role": "user", "content": "refund please"}]
    reply = client.chat.completions.create(model="gpt-4o", messages=ask)
    assert reply.choices[0].message.content == "Refund issued."
    client.close()


def test_rules_sequence_and_journal(mockai: MockAI) -> None:
    rule = mockai.add_rule(
        name="flaky",
        match={"content": {"contains": "REFUND", "ignore_case": True}},
        answer={"sequence": [{"error": {"status": 503}}, "Second time lucky."]},
    )
    with pytest.raises(openai.InternalServerError):
        ask(mockai)
    assert ask(mockai).choices[0].message.content == "Second time lucky."
    assert ask(mockai).choices[0].message.content == "Second time lucky."
    sent = mockai.requests(rule=rule)
    assert [r["status"] for r in sent] == [503, 200, 200]
    assert sent[0]["error"]["type"] == "server_error"
    assert sent[1]["reply"]["text"] == "Second time lucky."
    assert sent[1]["body"]["messages"] == MESSAGES
    mockai.clear_requests()
    assert mockai.requests() == []


class TestConfigOverride:
    @pytest.fixture
    def mockai_config(self) -> dict[str, Any]:
        return {"rules": [{"answer": {"echo": True}}], "access_token": "sk-own"}

    def test_uses_the_overridden_config(self, mockai: MockAI) -> None:
        assert mockai.api_key == "sk-own"
        assert ask(mockai).choices[0].message.content == MESSAGES[0]["content"]


def test_serving_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "answer.txt").write_text("From the fixture file.", encoding="utf-8")
    path = tmp_path / "mockai.yaml"
    path.write_text(
        yaml.safe_dump(
            {"access_token": "sk-file", "rules": [{"answer": {"file": "answer.txt"}}]}
        ),
        encoding="utf-8",
    )
    from mockai_tw.testing import serving

    with serving(config_file=str(path)) as mock:
        assert mock.api_key == "sk-file"
        assert ask(mock).choices[0].message.content == "From the fixture file."


@pytest.mark.mockai(config={"rules": [{"answer": "Marked."}]})
def test_marker_with_a_config_dict(mockai: MockAI) -> None:
    assert ask(mockai).choices[0].message.content == "Marked."


def test_times_expire(mockai: MockAI) -> None:
    mockai.add_rule(answer="Once.", times=1)
    assert ask(mockai).choices[0].message.content == "Once."
    assert ask(mockai).choices[0].message.content in ORIGINAL_REPLIES
    assert mockai.rules() == []
