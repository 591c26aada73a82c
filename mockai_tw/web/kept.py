"""Kept JSON records (conversations, stored chat completions) in this
process, or in the store every process shares.

With ``state.backend: redis`` the store's ``kv`` namespace is the truth and
this process's ``Records`` a cache of what it last read or wrote; with
``memory`` (or Redis away under ``on_error: local``) the ``Records`` are all
there is.  Either way bounded: the least recently used go first.  A change
is read-modify-write: two processes changing one conversation at the same
instant may lose one change (the API promises no more for concurrent
writers).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from twisted.logger import Logger

from mockai_tw.engine.records import Record, Records
from mockai_tw.state.types import StoreUnavailable
from mockai_tw.web.shared import Shared, json_record, unavailable

log = Logger()


_record = json_record


class Kept:
    """One kind of record (``namespace``), sized by ``size()`` at each write."""

    def __init__(
        self,
        namespace: str,
        size: Callable[[], int],
        shared: Callable[[], Shared | None],
    ) -> None:
        self.namespace = namespace
        self.size = size
        self._shared = shared
        # Sized when used: the config is not there yet when this is made.
        self._records = Records(1)

    @property
    def local(self) -> Records:
        """This process's records (with shared state: its cache of them)."""
        records = self._records
        size = self.size()
        if records.size != size:
            records.resize(size)
        return records

    def _store(self) -> Shared | None:
        shared = self._shared()
        if shared is None or shared.local:
            return None
        if not shared.connected:
            raise unavailable()
        return shared

    async def get(self, key: str) -> Record | None:
        shared = self._store()
        if shared is None:
            return self.local.get(key)
        try:
            found = _record(await shared.store.kv_get(self.namespace, key))
        except StoreUnavailable:
            raise unavailable() from None
        if found is None:
            self.local.delete(key)
        else:
            self.local.put(key, found)
        return found

    async def put(self, key: str, record: Record) -> None:
        self.local.put(key, record)
        shared = self._store()
        if shared is None:
            return
        try:
            await shared.store.kv_put(
                self.namespace, key, orjson.dumps(record), self.size()
            )
        except StoreUnavailable:
            raise unavailable() from None

    def share(self, key: str, record: Record) -> None:
        """``put`` without waiting (after a reply is sent): a lost write is logged."""
        self.local.put(key, record)
        shared = self._shared()
        if shared is None or not shared.connected:
            return
        blob = orjson.dumps(record)
        shared.store.guard(
            shared.store.kv_put(self.namespace, key, blob, self.size()),
            f"{self.namespace} keep",
        )

    async def delete(self, key: str) -> bool:
        shared = self._store()
        here = self.local.delete(key)
        if shared is None:
            return here
        try:
            return bool(await shared.store.kv_delete(self.namespace, key))
        except StoreUnavailable:
            raise unavailable() from None

    async def all(self) -> list[Record]:
        """Every record kept (at most ``size()``), in no particular order."""
        shared = self._store()
        if shared is None:
            return list(self.local)
        try:
            blobs = await shared.store.kv_all(self.namespace)
        except StoreUnavailable:
            raise unavailable() from None
        return [r for r in map(_record, blobs) if r is not None]

    async def fetch(self, key: str) -> None:
        """Bring ``key`` into this process's cache (before a sync reader)."""
        if self._store() is not None:
            await self.get(key)
