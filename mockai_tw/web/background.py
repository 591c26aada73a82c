"""Background responses on the reactor's clock: queued, in progress, done.

The process that created a background response runs it (its timers are
here); every step replaces the kept snapshot, locally and, with shared
state, in the store, so ``GET /v1/responses/{id}`` polls it from any
worker.  A cancel sent to another worker writes a ``cancelled`` snapshot
to the store; the running process reads the store before each step and
stops when it finds one.  At most ``responses.store_size`` run at once per
process (more: 429).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web import server

from mockai_tw.engine.background import (
    RUNNING,
    cannot_cancel,
    finished,
    not_background,
    resumed,
    snapshot,
    timeline,
)
from mockai_tw.engine.plan import ResponsePlan
from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.background import RetrieveQuery
from mockai_tw.web.pipeline import Endpoint, open_stream
from mockai_tw.web.site import ApiRequest
from mockai_tw.wire.responses import response_stream

if TYPE_CHECKING:
    from mockai_tw.web.face import Face

log = Logger()


@dataclass
class Job:
    """One running background response: its plan (as queued) and timers."""

    plan: ResponsePlan
    started: float
    status: str = "queued"
    calls: list[IDelayedCall] = field(default_factory=list)

    @property
    def final(self) -> ResponsePlan:
        # Reckoned as its stream reckons it, so both show one ``completed_at``.
        return finished(self.plan, self.plan.created_at)


def too_many(size: int) -> ApiError:
    return ApiError(
        429,
        f"Too many background responses in progress (at most {size} per"
        " process: responses.store_size). Please retry later.",
        type="requests",
        code="rate_limit_exceeded",
    )


class Jobs:
    """The background responses this process runs."""

    def __init__(
        self, face: Face, done: Callable[[Face, ResponsePlan], None] | None = None
    ) -> None:
        self.face = face
        self.running: dict[str, Job] = {}
        # Called with the finished plan (the conversation gets its items).
        self.done = done

    def __len__(self) -> int:
        return len(self.running)

    def check_room(self) -> None:
        size = self.face.config.responses.store_size
        if len(self.running) >= size:
            raise too_many(size)

    def start(self, plan: ResponsePlan) -> None:
        """Run ``plan`` (kept as queued already) on the clock."""
        clock = self.face.clock
        job = Job(plan, clock.seconds())
        self.running[plan.id] = job
        start_s, done_s = timeline(plan)
        job.calls = [
            clock.callLater(start_s, self._step, job, "in_progress"),
            clock.callLater(done_s, self._step, job, "done"),
        ]

    def _keep(self, plan: ResponsePlan) -> None:
        face = self.face
        face.responses.keep(plan)
        shared = face.shared
        if shared is not None and shared.connected:
            shared.keep(plan, face.config.responses.store_size)

    def _step(self, job: Job, status: str) -> None:
        if job.status not in RUNNING:
            return
        shared = self.face.shared
        if shared is None or not shared.connected:
            self._advance(job, status)
            return
        # A cancel may have come to another process: the store says.
        d = defer.ensureDeferred(shared.fetch([job.plan.id]))

        def got(found: dict[str, ResponsePlan]) -> None:
            stored = found.get(job.plan.id)
            if stored is not None and stored.status == "cancelled":
                self._stop(job, stored)
                return
            self._advance(job, status)

        def failed(failure: object) -> None:
            log.warn("mockai: background response {id}: store not read", id=job.plan.id)
            self._advance(job, status)

        d.addCallbacks(got, failed)

    def _advance(self, job: Job, status: str) -> None:
        if job.status not in RUNNING:
            return
        if status == "in_progress":
            job.status = status
            self._keep(snapshot(job.plan, status))
            return
        final = job.final
        job.status = final.status
        self.running.pop(job.plan.id, None)
        self._keep(final)
        if self.done is not None:
            self.done(self.face, final)

    def _stop(self, job: Job, cancelled: ResponsePlan) -> None:
        job.status = "cancelled"
        for call in job.calls:
            if call.active():
                call.cancel()
        self.running.pop(job.plan.id, None)
        self.face.responses.keep(cancelled)

    def cancel(self, stored: ResponsePlan) -> ResponsePlan:
        """Cancel the background response ``stored`` (as last kept): the
        cancelled snapshot, or the API's 400 for one already finished."""
        job = self.running.get(stored.id)
        if job is not None:
            cancelled = snapshot(job.plan, "cancelled")
            self._stop(job, cancelled)
            self._keep(cancelled)
            return cancelled
        if stored.status == "cancelled":
            return stored
        if stored.status not in RUNNING:
            raise cannot_cancel(stored.status)
        # Running on another process: the store tells it to stop.
        cancelled = snapshot(stored, "cancelled")
        self._keep(cancelled)
        return cancelled

    def stop_all(self) -> None:
        """Forget every timer (the service stops)."""
        for job in list(self.running.values()):
            for call in job.calls:
                if call.active():
                    call.cancel()
        self.running.clear()


def replay(
    face: Face,
    ep: Endpoint,
    request: server.Request,
    stored: ResponsePlan,
    query: RetrieveQuery,
) -> int:
    """``GET /v1/responses/{id}?stream=true``: the background response's
    stream again, from ``starting_after``, each event when it is due (at
    once for what is already out).  Run by another process, the timing is
    reckoned from its ``created_at`` (whole seconds)."""
    if not stored.request.background:
        raise not_background(stored.id)
    now = face.clock.seconds()
    job = face.background.running.get(stored.id)
    if job is not None:
        final, elapsed = job.final, now - job.started
    elif stored.status in RUNNING:
        final = finished(stored, stored.created_at)
        elapsed = now - stored.created_at
    elif stored.status == "cancelled":
        raise invalid(
            f"Response '{stored.id}' was cancelled: its stream cannot be resumed.",
            param="response_id",
        )
    else:
        final, elapsed = stored, float("inf")
    events = resumed(response_stream(final), query.starting_after, elapsed)
    open_stream(face, ep, cast(ApiRequest, request), events)
    return server.NOT_DONE_YET
