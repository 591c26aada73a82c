"""One server across processes: the server's side of ``state.backend: redis``.

The store (``state/redis.py``) keeps rate-limit budgets, rule counters, the
run-time rules, the journal, the Responses store and the records of files,
Uploads and batches (``state/files.py``); this is what the server
asks of it and what an outage means.  Each process keeps its own parsed copy
of the run-time rules and checks it against the store's version in the one
round trip every request makes (``admit``): a stale copy is re-read, then the
request is admitted again.  While Redis is away, ``on_error: fail`` answers
503 ``mock_state_unavailable`` (and ``/ready`` says no); ``on_error: local``
serves from this process's own state, logged once per outage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import server

from mockai_tw.config import StateConfig
from mockai_tw.engine.codec import CodecError, dump, load
from mockai_tw.engine.plan import ResponsePlan
from mockai_tw.engine.rules import Rule, RuleBook
from mockai_tw.errors import ApiError
from mockai_tw.state.files import SharedFiles
from mockai_tw.state.types import StoreError
from mockai_tw.state.url import parse_url
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import send_error

if TYPE_CHECKING:
    # Imported when used: the memory backend needs no Redis client.
    from mockai_tw.state.redis import RedisStore

log = Logger()

T = TypeVar("T")

#: How often a change to the run-time rules is tried again when another
#: process changed them first.
MAX_RULE_RETRIES = 16
#: How often a request is admitted again after finding its rules stale.
MAX_STALE = 4


def json_record(blob: bytes | None) -> dict[str, Any] | None:
    """A JSON object kept in the store; None when missing or unreadable (a
    record another version wrote is treated as absent, never a 500)."""
    if blob is None:
        return None
    try:
        value = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def unavailable() -> ApiError:
    return ApiError(
        503,
        "The mock server's shared state (Redis) is unavailable. Please retry"
        " your request.",
        type="server_error",
        code="mock_state_unavailable",
    )


class Shared:
    """The store, the run-time rules' version this process holds, and the
    outage policy."""

    def __init__(
        self,
        config: StateConfig,
        parse: Callable[[Mapping[str, Any]], Rule],
        clock: IReactorTime,
        store: RedisStore | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        # Journal records of this reactor turn, appended at its end.
        self._pending: list[bytes] = []
        self._bounds = (0, 0)
        self._flush: IDelayedCall | None = None
        # The rule parser (with the config file's directory for file answers).
        self.parse = parse
        self.url = parse_url(config.url)
        if store is None:
            from mockai_tw.state.redis import RedisStore

            store = RedisStore(
                self.url,
                config.prefix,
                connect_timeout=config.connect_timeout_s,
                reply_timeout=config.reply_timeout_s,
            )
        self.store = store
        # Files, Uploads and batches' calls on it (web/files_index.py).
        self.files = SharedFiles(store)
        # The run-time rules' version this process's book holds (-1: never read).
        self.version = -1
        self.store.watch_connection(self._changed)

    @property
    def connected(self) -> bool:
        return self.store.connected

    @property
    def local(self) -> bool:
        """Serve from this process's own state (Redis away, ``on_error: local``)."""
        return not self.store.connected and self.config.on_error == "local"

    def _changed(self, up: bool) -> None:
        if up:
            log.info("mockai: shared state connected ({url})", url=self.url.redacted)
            # Whatever Redis holds now (it may have restarted empty) is read
            # again before the next request is admitted.
            self.version = -1
        elif self.config.on_error == "local":
            log.warn(
                "mockai: shared state lost ({url}): serving from this process's"
                " own state until it is back",
                url=self.url.redacted,
            )
        else:
            log.warn(
                "mockai: shared state lost ({url}): API requests get 503"
                " mock_state_unavailable until it is back",
                url=self.url.redacted,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "url": self.url.redacted,
            "prefix": self.config.prefix,
            "connected": self.store.connected,
            "on_error": self.config.on_error,
        }

    # --- run-time rules ---------------------------------------------------

    def sync(self, book: RuleBook) -> defer.Deferred[int]:
        """The store's run-time rules into ``book`` (when they changed)."""

        def got(snapshot: Any) -> int:
            if snapshot.version != self.version:
                book.install(snapshot.first, snapshot.last, self.parse)
                self.version = snapshot.version
            return int(snapshot.version)

        return self.store.rules_get().addCallback(got)

    async def change_rules(self, book: RuleBook, change: Callable[[], T]) -> T:
        """Apply ``change`` to the freshest copy and store it; when another
        process changed the rules meanwhile, read them again and redo it."""
        for _ in range(MAX_RULE_RETRIES):
            version = await self.sync(book)
            before = book.runtime()
            result = change()
            after = book.runtime()
            if after == before:
                return result
            stored = await self.store.rules_put(version, *after)
            if stored is not None:
                self.version = stored
                return result
            self.version = -1
        raise StoreError("the run-time rules kept changing under this process")

    # --- the journal and the Responses store --------------------------------

    def journal(self, packed: bytes, size: int, max_bytes: int) -> None:
        """Append in the background: a lost record is logged, not waited on.
        The records of one reactor turn go in one round trip, in order."""
        self._pending.append(packed)
        self._bounds = (size, max_bytes)
        if self._flush is None:
            self._flush = self.clock.callLater(0, self._append)

    def _append(self) -> None:
        self._flush = None
        records, self._pending = self._pending, []
        self.store.guard(
            self.store.journal_append(records, *self._bounds), "journal append"
        )

    def keep(self, plan: Any, size: int) -> None:
        """Share a kept reply (a Responses plan with ``store`` on)."""
        if not isinstance(plan, ResponsePlan) or not plan.request.store:
            return
        try:
            blob = dump(plan)
        except CodecError as error:
            log.warn("mockai: response {id} not shared: {why}", id=plan.id, why=error)
            return
        self.store.guard(self.store.response_keep(plan.id, blob, size), "response keep")

    async def fetch(self, response_ids: Sequence[str]) -> dict[str, ResponsePlan]:
        found: dict[str, ResponsePlan] = {}
        for response_id in response_ids:
            blob = await self.store.response_get(response_id)
            if blob is None:
                continue
            try:
                found[response_id] = load(blob)
            except CodecError as error:
                log.warn(
                    "mockai: shared response {id} unreadable: {why}",
                    id=response_id,
                    why=error,
                )
        return found


class ThroughStore(ApiResource):
    """A resource that reads the shared store before it answers, when there
    is one: ``shared`` does the reading, then answers as ``render`` would."""

    def render(self, request: server.Request) -> bytes | int:
        shared = self.state.shared
        if shared is None or shared.local:
            return super().render(request)
        if not shared.connected:
            send_error(request, unavailable(), self.error_body)
            return server.NOT_DONE_YET
        return self.later(request, self.shared(request, shared))

    async def shared(self, request: server.Request, shared: Shared) -> bytes | int:
        return ApiResource.render(self, request)
