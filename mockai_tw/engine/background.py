"""Background responses (``background: true``): their life as plain values.

A background response is planned whole when it is created, then shown in
steps: ``queued`` at once, ``in_progress`` when its first token is due (the
timing model's TTFT), and ``completed`` (or ``incomplete``) when its last
one is, or ``cancelled``.  Each step is a snapshot of the same plan with
another status; the web layer moves them on the reactor's clock.  Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TypeVar

from mockai_tw.engine.plan import CallOutput, MessageOutput, ResponsePlan
from mockai_tw.errors import ApiError, invalid

#: Statuses a background response may still leave.
RUNNING = ("queued", "in_progress")

T = TypeVar("T")


def queued(plan: ResponsePlan) -> ResponsePlan:
    """What ``POST /v1/responses`` answers at once: no wait, no output yet."""
    return dataclasses.replace(plan, status="queued", delay_s=0.0)


def final_status(plan: ResponsePlan) -> str:
    for item in plan.output:
        if isinstance(item, MessageOutput) and item.status == "incomplete":
            return "incomplete"
    return "completed"


def _steps(plan: ResponsePlan) -> int:
    """The paced steps after the first piece (as chat counts a choice's)."""
    calls = [o for o in plan.output if isinstance(o, CallOutput)]
    if calls:
        return len(calls) - 1 + sum(len(c.call.fragments) for c in calls)
    return sum(len(o.pieces) for o in plan.output if isinstance(o, MessageOutput))


def timeline(plan: ResponsePlan) -> tuple[float, float]:
    """Seconds from creation to ``in_progress`` and to the finished answer."""
    pacing = plan.pacing
    start = pacing.first_s
    return start, max(start, pacing.due(max(_steps(plan) - 1, 0)))


def finished(plan: ResponsePlan, created_s: float) -> ResponsePlan:
    """The snapshot once its last token is out (``created_s``: when it started)."""
    done = timeline(plan)[1]
    return dataclasses.replace(
        plan, status=final_status(plan), completed_at=int(created_s + done)
    )


def snapshot(plan: ResponsePlan, status: str) -> ResponsePlan:
    return dataclasses.replace(plan, status=status)


def not_background(response_id: str) -> ApiError:
    return invalid(
        f"Response '{response_id}' was not created with background=true: only"
        " background responses can be cancelled or streamed again.",
        param="response_id",
    )


def cannot_cancel(status: str) -> ApiError:
    return invalid(f"Cannot cancel a response with status '{status}'.")


def resumed(
    events: Iterable[tuple[float, T]], starting_after: int | None, elapsed_s: float
) -> Iterator[tuple[float, T]]:
    """The stream's events after sequence number ``starting_after``, each due
    as it would have been had the client stayed (``elapsed_s`` in)."""
    first = -1 if starting_after is None else starting_after
    for number, (due, data) in enumerate(events):
        if number > first:
            yield max(0.0, due - elapsed_s), data
