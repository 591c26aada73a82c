"""The agent loop driven entirely by mockai rules, through the real SDK."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from agent import run_agent

from mockai_tw.testing import MockAI

CONFIG = str(Path(__file__).with_name("mockai.yaml"))


@pytest.mark.mockai(config_file=CONFIG)
def test_order_question_goes_through_the_tool(mockai: MockAI) -> None:
    client = openai.OpenAI(base_url=mockai.base_url, api_key=mockai.api_key)
    calls: list[str] = []

    def lookup_order(order_id: str) -> dict[str, str]:
        calls.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    answer = run_agent(client, "Where is order #42?", {"lookup_order": lookup_order})

    assert answer == "Order 42 has shipped."
    assert calls == ["42"]
    sent = mockai.requests(path="/v1/chat/completions")
    assert [r["rule"] for r in sent] == ["look-up-order", "report-status"]
    tool_message = sent[1]["body"]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert json.loads(tool_message["content"])["status"] == "shipped"
    assert sent[0]["headers"]["authorization"] == "[redacted]"
    client.close()


@pytest.mark.mockai(config_file=CONFIG)
def test_anything_else_is_refused(mockai: MockAI) -> None:
    client = openai.OpenAI(base_url=mockai.base_url, api_key=mockai.api_key)
    assert run_agent(client, "Tell me a joke") == "I can only help with orders."
    assert [r["rule"] for r in mockai.requests()] == ["refuse"]
    client.close()
