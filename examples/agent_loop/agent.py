"""A tiny tool-using agent: the loop every OpenAI agent framework runs.

user -> model asks for a tool -> the tool runs -> its result goes back ->
the model answers.  Nothing here knows about mockai: point ``client`` at the
real API or at the mock and the code is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

SYSTEM = "You help customers with their orders. Use the tools."
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by its number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    }
]


def lookup_order(order_id: str) -> dict[str, str]:
    """The application's own tool (a database call in real life)."""
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL"}


def run_agent(
    client: Any,
    question: str,
    tools: Mapping[str, Callable[..., Any]] | None = None,
    model: str = "gpt-4o-mini",
    max_turns: int = 5,
) -> str:
    """Ask, run the tools the model calls, and return its final answer."""
    tools = tools or {"lookup_order": lookup_order}
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    for _ in range(max_turns):
        reply = client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS
        )
        message = reply.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = tools[call.function.name](**json.loads(call.function.arguments))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": json.dumps(result),
                }
            )
    raise RuntimeError(f"no answer after {max_turns} turns")
