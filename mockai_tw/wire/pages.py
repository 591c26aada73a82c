"""The API's cursor page, one shape for every list it answers.

Files, batches, conversation items, stored completions and their messages
all page the same way: ``first_id`` / ``last_id`` are null on an empty page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson


def cursor_page(objects: Sequence[dict[str, Any]], has_more: bool) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": list(objects),
            "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None,
            "has_more": has_more,
        }
    )
