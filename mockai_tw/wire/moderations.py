"""The moderation object: ``id``, ``model`` and one result per input."""

from __future__ import annotations

from typing import Any

import orjson

from mockai_tw.engine.plan import ModerationPlan, ModerationResult


def _result(result: ModerationResult) -> dict[str, Any]:
    return {
        "flagged": result.flagged,
        "categories": dict(result.categories),
        "category_scores": dict(result.category_scores),
        "category_applied_input_types": {
            c: list(types) for c, types in result.applied_input_types.items()
        },
    }


def moderation_body(plan: ModerationPlan) -> bytes:
    return orjson.dumps(
        {
            "id": plan.id,
            "model": plan.model,
            "results": [_result(r) for r in plan.results],
        }
    )
