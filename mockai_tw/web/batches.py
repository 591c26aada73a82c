"""``/v1/batches``: batches that really run, on the service's clock.

Each line of a batch goes through the same endpoint description a live
request takes (parse, model check, rules, fault decision, plan, the body
renderer), with ``batch: true`` in what rules see; an answer that would be
an HTTP error becomes the line's ``status_code`` and error body.  Every
stage waits on ``face.clock`` (``IReactorTime``), so ``task.Clock`` or the
test helper's virtual time steps a batch through its states.

With ``state.backend: redis`` a batch runs in the process that created it
(its timers are here) and every change of its record is written to the
store, so any process answers a poll; a cancel sent to another process is a
flag in the store, read before each stage and each slice of lines.  A
batch whose process died stays as last written, until its ``expires_at``
passes: then it reads as ``expired`` everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from twisted.internet import defer, task
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.batches import (
    BatchLine,
    BatchRecord,
    batch_blob,
    batch_from,
    cancelled_at,
    line_body,
    split_lines,
    usage_of,
    validate_input,
)
from mockai_tw.engine.ids import new_id, request_id
from mockai_tw.engine.models import check_model
from mockai_tw.engine.rules import Claim, ErrorAnswer, scripted_error
from mockai_tw.engine.rules.context import NO_HEADERS, RequestContext
from mockai_tw.errors import ApiError, server_error
from mockai_tw.files_store import FileRecord, Writer
from mockai_tw.request.files import BATCHES_LIMIT, parse_create_batch, parse_list_query
from mockai_tw.web import endpoints
from mockai_tw.web.face import Face
from mockai_tw.web.files_index import FileIndex, call, store_of
from mockai_tw.web.pipeline import Endpoint, fault_error
from mockai_tw.web.resources import ApiResource, ErrorResource, invalid_url
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire import files as wire

log = Logger()

#: The description each batch endpoint runs its lines through.
DESCRIPTIONS: Mapping[str, Endpoint] = {
    "/v1/chat/completions": endpoints.CHAT,
    "/v1/completions": endpoints.COMPLETIONS,
    "/v1/responses": endpoints.RESPONSES,
    "/v1/embeddings": endpoints.EMBEDDINGS,
    "/v1/moderations": endpoints.MODERATIONS,
}
#: Lines run in one reactor turn at most; the rest in the next turns.
SLICE = 200


class _BatchEngine:
    """The engine as a batch line sees it: rules are asked with ``batch``."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def match(self, context: RequestContext, now: float, claim: Any = None) -> Any:
        return self._engine.match(dataclasses.replace(context, batch=True), now, claim)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class _LineFace:
    """The server's face with the batch engine in place of its own."""

    def __init__(self, face: Face) -> None:
        self._face = face
        self.engine = _BatchEngine(face.engine)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._face, name)


def run_line(face: Face, ep: Endpoint, body: bytes, now: float) -> tuple[int, bytes]:
    """One line's answer: its status and body, as a live request would get
    them (rate limits and capacity aside: a batch has its own queue)."""
    line_face = cast(Face, _LineFace(face))
    try:
        parsed = ep.parse(body, None)
        check_model(face.config, parsed.model)
        claim = Claim()
        prepared, hits = ep.match(line_face, parsed, NO_HEADERS, now, claim)
        first = next((h for h in hits if h is not None), None)
        refusal = next(
            (
                scripted_error(h)
                for h in hits
                if h is not None and isinstance(h.answer, ErrorAnswer)
            ),
            None,
        )
        fault = face.faults.decide(
            parsed.model,
            None,
            first.fault if first is not None else None,
            first.fault_probability if first is not None else 1.0,
        )
        error = fault_error(ep, fault)
        if error is not None:
            raise error
        if fault is not None and fault.drop:
            raise server_error()
        reply = (
            None
            if refusal is not None
            else ep.plan(line_face, prepared, hits, now, None)
        )
        face.engine.rules.commit(claim, now)
        if refusal is not None:
            raise refusal
        data = ep.body(reply)
        if ep.sent is not None:
            ep.sent(face, reply)
        return 200, data
    except ApiError as error:
        return error.status, ep.error_body(error)
    except Exception:
        log.failure("mockai: a batch line failed")
        return 500, ep.error_body(server_error())


@dataclass
class _Run:
    """What running one batch holds beyond its record."""

    record: BatchRecord
    lines: list[BatchLine] = field(default_factory=list)
    done: int = 0
    # When the current stage began on the batch's own timeline: stages follow
    # each other from these, not from when a late timer ran, so one large
    # ``advance`` steps a batch through all of them.
    at: float = 0.0
    # When it expires, on that timeline: no line runs after it.
    deadline: float = 0.0
    output: Writer | None = None
    errors: Writer | None = None
    timer: IDelayedCall | None = None
    expiry: IDelayedCall | None = None
    # With shared state: the input file as read at create (its content is
    # on files.dir; its record in the store, not in this process's).
    input: FileRecord | None = None


def _not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")


def _limit(most: int) -> ApiError:
    return ApiError(
        429,
        f"Too many batches in progress (batches.max_batches ="
        f" {most}). Wait for some to finish.",
        type="batch_limit",
        code="batch_limit_exceeded",
    )


#: The store's namespaces: the records, and the cancels sent to a process
#: that does not run the batch.
BATCHES = "batches"
CANCELS = "batch_cancels"
#: Statuses a cancel applies to.
CANCELLABLE = ("validating", "in_progress")


class Batches:
    """Every batch this process runs, and the timers that move them."""

    def __init__(self, face: Face) -> None:
        self.face = face
        self.runs: dict[str, _Run] = {}
        # Store reads and writes under way, and due stages waiting for the
        # next reactor turn (shared state only): what ``idle`` waits for.
        self._pending: set[defer.Deferred[None]] = set()
        self._soon: list[IDelayedCall] = []

    @property
    def config(self) -> Any:
        return self.face.config.batches

    def _files(self) -> FileIndex:
        return FileIndex(self.face.files, lambda: self.face.shared)

    def _runner_store(self) -> Any:
        """The shared store a running batch writes to, None when there is
        none (or it is away: the batch carries on, its writes lost)."""
        shared = self.face.shared
        if shared is None or not shared.connected:
            return None
        return store_of(shared)

    def _now(self) -> float:
        return self.face.clock.seconds()

    def _later(self, delay: float, f: Any, *args: Any) -> IDelayedCall:
        return self.face.clock.callLater(max(0.0, delay), self._guarded, f, *args)

    def _at(self, when: float, f: Any, *args: Any) -> IDelayedCall:
        """``f`` at ``when`` on the service's clock (now, if that has passed).

        With shared state a stage may come due after a store read, outside
        any ``advance`` of a driven clock: then it runs in the reactor's
        next turn, not whenever that clock next moves."""
        if when <= self._now() and self._runner_store() is not None:
            call = cast(IReactorTime, _reactor).callLater(0, self._guarded, f, *args)
            self._soon = [c for c in self._soon if c.active()] + [call]
            return call
        return self._later(when - self._now(), f, *args)

    def _guarded(self, f: Any, *args: Any) -> None:
        try:
            f(*args)
        except Exception:
            log.failure("mockai: a batch stage failed")

    def _track(self, d: defer.Deferred[Any], what: str) -> None:
        """A store call in the background: logged when it fails, waited for
        by ``idle``."""
        seen: defer.Deferred[None] = defer.Deferred()
        self._pending.add(seen)

        def over(result: object) -> object:
            self._pending.discard(seen)
            seen.callback(None)
            return result

        d.addBoth(over)
        store = self._runner_store()
        if store is not None:
            store.store.guard(d, what)
        else:
            d.addErrback(lambda _: None)

    async def idle(self) -> None:
        """When nothing of this process's batches waits on the store or on
        the reactor's next turn (for tests: after the clock moved)."""
        while True:
            if self._pending:
                await defer.DeferredList(list(self._pending))
            elif any(c.active() for c in self._soon):
                await task.deferLater(cast(IReactorTime, _reactor), 0, lambda: None)
            else:
                return

    def _share(self, run: _Run) -> None:
        """The record as it is now, to the store (in order: one connection)."""
        store = self._runner_store()
        if store is None:
            return
        record = run.record
        d = store.store.kv_put(
            BATCHES, record.id, batch_blob(record), self.config.max_batches
        )
        self._track(d, "batch write")

    # --- the API ------------------------------------------------------------

    async def create(self, body: bytes) -> BatchRecord:
        asked = parse_create_batch(body)
        files = self._files()
        shared = files.store()
        found = await files.get(asked.input_file_id)
        if found is None:
            raise ApiError(
                404,
                f"No such File object: {asked.input_file_id}",
                param="input_file_id",
            )
        if found.purpose != "batch":
            raise ApiError(
                400,
                f"The input file {found.id} must have purpose 'batch', not"
                f" '{found.purpose}'.",
                param="input_file_id",
            )
        if shared is None:
            self._make_room()
        else:
            await self._make_shared_room(shared)
        now = self._now()
        record = BatchRecord(
            id=new_id("batch_", 32),
            endpoint=asked.endpoint,
            input_file_id=asked.input_file_id,
            created_at=int(now),
            expires_at=int(now + self.config.expire_after_s),
            metadata=asked.metadata,
            output_expires_after_s=asked.output_expires_after_s,
        )
        run = _Run(record, at=now, deadline=now + self.config.expire_after_s)
        if shared is not None:
            run.input = found
            most = self.config.max_batches
            if await call(shared.add(BATCHES, record.id, batch_blob(record), most)):
                raise _limit(most)
        self.runs[record.id] = run
        run.timer = self._at(
            now + self.config.validating_s, self._gated, self._validate, run
        )
        run.expiry = self._at(run.deadline, self._expire, run)
        return record

    async def _make_shared_room(self, shared: Any) -> None:
        """As ``_make_room``, over the fleet's batches."""
        most = self.config.max_batches
        blobs = await call(shared.store.kv_all(BATCHES))
        if len(blobs) < most:
            return
        records = [r for r in map(batch_from, blobs) if r is not None]
        done = [self._read_expiry(r) for r in records]
        done = sorted((r for r in done if r.final), key=lambda r: r.created_at)
        if not done:
            raise _limit(most)
        await call(shared.store.kv_delete(BATCHES, done[0].id))

    def _read_expiry(self, record: BatchRecord) -> BatchRecord:
        """A batch past ``expires_at`` reads as expired (its process may
        have died; a live one expires it itself at that time)."""
        if record.final or record.status in ("cancelling", "finalizing"):
            return record
        if self._now() >= record.expires_at:
            record.status = "expired"
            record.expired_at = record.expires_at
        return record

    def _merged(self, record: BatchRecord, cancelled: float | None) -> BatchRecord:
        """The stored record with a cancel not yet seen by its process."""
        if cancelled is not None and record.status in CANCELLABLE:
            record.status = "cancelling"
            record.cancelling_at = int(cancelled)
        return self._read_expiry(record)

    async def get(self, batch_id: str) -> BatchRecord:
        shared = self._files().store()
        if shared is None:
            run = self.runs.get(batch_id)
            if run is None:
                raise _not_found(batch_id)
            return run.record
        kv = shared.store
        # Both sent at once: one round trip.
        blob, flag = kv.kv_get(BATCHES, batch_id), kv.kv_get(CANCELS, batch_id)
        record, cancelled = batch_from(await call(blob)), await call(flag)
        if record is None:
            raise _not_found(batch_id)
        return self._merged(record, cancelled_at(cancelled))

    async def listed(
        self, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        shared = self._files().store()
        if shared is None:
            records = [r.record for r in reversed(self.runs.values())]
        else:
            kv = shared.store
            blobs, flags = kv.kv_all(BATCHES), kv.kv_all(CANCELS)
            cancels: dict[str, float] = {}
            flagged: list[bytes] = await call(flags)
            for flag in flagged:
                try:
                    value = orjson.loads(flag)
                    cancels[str(value["id"])] = float(value["at"])
                except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
                    continue
            stored: list[bytes] = await call(blobs)
            found = [r for r in map(batch_from, stored) if r is not None]
            records = [self._merged(r, cancels.get(r.id)) for r in found]
            records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        if after is not None:
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else []
        return records[:limit], len(records) > limit

    async def cancel(self, batch_id: str) -> BatchRecord:
        run = self.runs.get(batch_id)
        shared = self._files().store()
        if shared is None or (run is not None and not run.record.final):
            if run is None:
                raise _not_found(batch_id)
            return self._cancel(run)
        record = await self.get(batch_id)
        _cancellable(record)
        # Run by another process: it reads this before its next slice.
        at = self._now()
        flag = orjson.dumps({"id": batch_id, "at": at})
        await call(
            shared.store.kv_put(CANCELS, batch_id, flag, self.config.max_batches)
        )
        record.status = "cancelling"
        record.cancelling_at = int(at)
        return record

    def _cancel(self, run: _Run, at: float | None = None) -> BatchRecord:
        """Cancel a batch this process runs (``at``: when another process
        was told to)."""
        record = run.record
        _cancellable(record)
        record.status = "cancelling"
        run.at = self._now() if at is None else at
        record.cancelling_at = int(run.at)
        self._stop(run, expiry=True)
        done_at = run.at + self.config.finalizing_s
        run.timer = self._at(done_at, self._finish, run, "cancelled", done_at)
        self._share(run)
        return record

    def stop(self) -> None:
        """At stop: every timer cancelled, what was being written thrown away."""
        for call_ in self._soon:
            if call_.active():
                call_.cancel()
        for run in self.runs.values():
            self._stop(run, expiry=True)
            for writer in (run.output, run.errors):
                if writer is not None:
                    writer.abort()

    # --- the stages ---------------------------------------------------------

    def _gated(self, f: Any, run: _Run) -> None:
        """``f(run)``, after reading whether another process cancelled the
        batch (shared state only; a failed read carries on)."""
        store = self._runner_store()
        if store is None:
            f(run)
            return
        d = store.store.kv_get(CANCELS, run.record.id)

        def got(blob: bytes | None) -> None:
            if run.record.status not in CANCELLABLE:
                return  # cancelled here, or expired, meanwhile
            at = cancelled_at(blob)
            if at is not None:
                self._cancel(run, at)
            else:
                f(run)

        def failed(failure: Any) -> None:
            log.warn(
                "mockai: batch {id}: cancels not read: {why}",
                id=run.record.id,
                why=failure.getErrorMessage(),
            )
            if run.record.status in CANCELLABLE:
                f(run)

        d.addCallbacks(got, failed)
        d.addErrback(
            lambda failure: log.failure("mockai: a batch stage failed", failure)
        )
        # Waited for by ``idle`` too: the stage runs when the read is back.
        self._track(d, "a batch's cancel read")
        self._track(d, "batch cancel read")

    def _lookup(self, run: _Run) -> FileRecord | None:
        """The input file, if it is still there."""
        found = run.input
        if found is None:
            return self.face.files.get(run.record.input_file_id)
        if found.path is not None and os.path.exists(found.path):
            return found
        return None

    def _validate(self, run: _Run) -> None:
        run.timer = None
        record = run.record
        store = self.face.files
        found = self._lookup(run)
        run.at += self.config.validating_s
        now = int(run.at)
        if found is None:
            errors = [
                {
                    "code": "invalid_file",
                    "message": f"The input file {record.input_file_id} was deleted"
                    " before the batch could read it.",
                    "param": "input_file_id",
                    "line": None,
                }
            ]
            return self._fail(run, errors, now)
        try:
            lines, errors, model = validate_input(
                split_lines(store.chunks(found)),
                record.endpoint,
                self.config.max_requests,
                self.config.max_input_bytes,
            )
        except FileNotFoundError:
            return self._fail(run, [], now)
        if errors:
            return self._fail(run, errors, now)
        record.model = model
        record.status = "in_progress"
        record.in_progress_at = now
        record.total = len(lines)
        run.lines = lines
        run.output = store.writer(limit=store.config.total_bytes)
        run.errors = store.writer(limit=store.config.total_bytes)
        self._share(run)
        self._step(run)

    def _fail(self, run: _Run, errors: list[dict[str, Any]], now: int) -> None:
        record = run.record
        record.status = "failed"
        record.failed_at = now
        record.errors = errors
        self._stop(run, expiry=True)
        self._done(run)

    def _step(self, run: _Run) -> None:
        """Run the lines due by now (a slice per turn), then wait for the next."""
        run.timer = None
        record = run.record
        if record.status != "in_progress":
            return
        per = self.config.seconds_per_request
        now = self._now()
        ep = DESCRIPTIONS[record.endpoint]
        ran = 0
        with self._input(run) as source:
            while run.done < len(run.lines) and ran < SLICE:
                due = run.at + (run.done + 1) * per
                if due > now or due > run.deadline:
                    break
                self._run_one(run, ep, source, run.lines[run.done], due)
                run.done += 1
                ran += 1
        if run.done < len(run.lines):
            due = run.at + (run.done + 1) * per
            if due <= run.deadline:
                run.timer = self._at(due, self._gated, self._step, run)
            if ran:
                self._share(run)
            return
        record.status = "finalizing"
        run.at += len(run.lines) * per
        record.finalizing_at = int(run.at)
        done_at = run.at + self.config.finalizing_s
        run.timer = self._at(done_at, self._finish, run, "completed", done_at)
        self._share(run)

    def _input(self, run: _Run) -> Any:
        found = self._lookup(run)
        if found is None:
            return _Gone()
        try:
            return self.face.files.open(found)
        except FileNotFoundError:
            return _Gone()

    def _run_one(
        self, run: _Run, ep: Endpoint, source: Any, line: BatchLine, now: float
    ) -> None:
        record = run.record
        raw = b""
        if source is not None:
            source.seek(line.offset)
            raw = source.read(line.length)
        if len(raw) != line.length:
            status, body = (
                500,
                ep.error_body(
                    ApiError(
                        500, "The batch input file was deleted.", type="server_error"
                    )
                ),
            )
        else:
            status, body = run_line(self.face, ep, line_body(raw), now)
        out = wire.output_line(
            new_id("batch_req_", 32), line.custom_id, status, request_id(), body
        )
        if status == 200:
            record.completed += 1
            tokens_in, tokens_out = usage_of(body)
            record.input_tokens += tokens_in
            record.output_tokens += tokens_out
            writer = run.output
        else:
            record.failed += 1
            writer = run.errors
        assert writer is not None
        writer.write(out)

    def _expire(self, run: _Run) -> None:
        run.expiry = None
        record = run.record
        if record.final or record.status in ("cancelling", "finalizing"):
            return
        self._stop(run)
        if run.errors is not None:
            for line in run.lines[run.done :]:
                run.errors.write(
                    wire.unrun_line(
                        new_id("batch_req_", 32),
                        line.custom_id,
                        "batch_expired",
                        "This request could not be executed before the"
                        " completion window expired.",
                    )
                )
        self._finish(run, "expired", run.deadline)

    def _finish(self, run: _Run, status: str, when: float) -> None:
        """The output and error files, then the final status and its time."""
        run.timer = None
        record = run.record
        expiry = record.output_expires_after_s
        for kind, writer in (("output", run.output), ("error", run.errors)):
            if writer is None:
                continue
            if writer.size == 0:
                writer.abort()
                continue
            made, kept = self._files().keep(
                writer, f"{record.id}_{kind}.jsonl", "batch_output", expiry
            )
            if kept is not None:
                # Sent before the record that names it: read in that order.
                self._track(kept, "batch output file")
            if kind == "output":
                record.output_file_id = made.id
            else:
                record.error_file_id = made.id
        run.output = run.errors = None
        run.lines = []
        record.status = status
        setattr(record, f"{status}_at", int(when))
        self._stop(run, expiry=True)
        self._done(run)

    def _done(self, run: _Run) -> None:
        """A batch finished: shared, and with shared state no longer this
        process's to hold (the store answers for it)."""
        self._share(run)
        if self._runner_store() is not None:
            self.runs.pop(run.record.id, None)

    def _stop(self, run: _Run, expiry: bool = False) -> None:
        for name in ("timer", "expiry") if expiry else ("timer",):
            call = getattr(run, name)
            if call is not None and call.active():
                call.cancel()
            setattr(run, name, None)

    def _make_room(self) -> None:
        """Past batches.max_batches the oldest finished batch goes; with none
        finished, a new batch is refused."""
        if len(self.runs) < self.config.max_batches:
            return
        for batch_id, run in self.runs.items():
            if run.record.final:
                del self.runs[batch_id]
                return
        raise _limit(self.config.max_batches)


def _cancellable(record: BatchRecord) -> None:
    if record.status not in CANCELLABLE:
        raise ApiError(
            400,
            f"Cannot cancel a batch with status '{record.status}'.",
            param="batch_id",
        )


class _Gone:
    """The input file when it was deleted mid-run: every read comes back empty."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- the routes ------------------------------------------------------------------


class BatchesRoot(ApiResource):
    """``POST /v1/batches`` (create) and ``GET /v1/batches`` (list)."""

    def render_POST(self, request: server.Request) -> int:
        return self.later(request, self._create(cast(ApiRequest, request)))

    async def _create(self, request: ApiRequest) -> bytes:
        record = await self.state.batches.create(request.body())
        return send_json(request, 200, wire.batch_body(record))

    def render_GET(self, request: server.Request) -> int:
        query = parse_list_query(request.args or {}, BATCHES_LIMIT, orders=False)
        return self.later(request, self._list(request, query))

    async def _list(self, request: server.Request, query: Any) -> bytes:
        records, more = await self.state.batches.listed(query.after, query.limit)
        return send_json(
            request, 200, wire.page([wire.batch_json(r) for r in records], more)
        )

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path:
            return self
        return BatchItem(self.state, path.decode("utf-8", "replace"))


class BatchItem(ApiResource):
    def __init__(self, face: Face, batch_id: str) -> None:
        super().__init__(face)
        self.batch_id = batch_id

    def render_GET(self, request: server.Request) -> int:
        return self.later(request, self._get(request))

    async def _get(self, request: server.Request) -> bytes:
        record = await self.state.batches.get(self.batch_id)
        return send_json(request, 200, wire.batch_body(record))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"cancel":
            return BatchCancel(self.state, self.batch_id)
        return ErrorResource(invalid_url(request))


class BatchCancel(ApiResource):
    def __init__(self, face: Face, batch_id: str) -> None:
        super().__init__(face)
        self.batch_id = batch_id

    def render_POST(self, request: server.Request) -> int:
        return self.later(request, self._cancel(request))

    async def _cancel(self, request: server.Request) -> bytes:
        record = await self.state.batches.cancel(self.batch_id)
        return send_json(request, 200, wire.batch_body(record))
