"""Files, Uploads and batches in the shared store: adds that refuse.

Their records live in ``kv`` namespaces as the Responses store's do, but a
file or an Upload must not push out an older one the way ``kv_put`` drops
the least recently used: past ``files.max_files`` (or the shared byte count
past ``files.total_bytes``) the add is refused, atomically, by a script.
The bytes are one counter every process charges.  An Upload's parts are a
hash of their own, so two processes adding parts at once lose none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet import defer

from mockai_tw.state.scripts import Script

if TYPE_CHECKING:
    from mockai_tw.state.redis import RedisStore

#: What ``add`` answers.
ADDED, TOO_MANY, TOO_LARGE = 0, 1, 2
#: A pending Upload's parts outlive it by this much at most (it lasts an hour).
PARTS_TTL_S = 2 * 3600

KV_ADD = Script(
    "kv_add",
    b"""
-- KEYS: blobs, index, sequence, the bytes counter.
-- ARGV: id, blob, most records, bytes (0: a record with no content), most
-- bytes, force (1: never refused).
-- Returns 0 when added, 1 past the count, 2 past the bytes.
if ARGV[6] ~= '1' then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
     and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    return 1
  end
  local size = tonumber(ARGV[4])
  if size > 0 then
    local used = tonumber(redis.call('GET', KEYS[4]) or '0')
    if used + size > tonumber(ARGV[5]) then
      return 2
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
redis.call('INCRBY', KEYS[4], ARGV[4])
return 0
""",
)

KV_DROP = Script(
    "kv_drop",
    b"""
-- KEYS: blobs, index, the bytes counter.  ARGV: id, its bytes.
-- Returns 1 when there was one (its bytes given back), else 0.
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('DECRBY', KEYS[3], ARGV[2]) < 0 then
  redis.call('SET', KEYS[3], 0)
end
return 1
""",
)

CHARGE_BYTES = Script(
    "files_bytes",
    b"""
-- KEYS: the bytes counter.  ARGV: bytes (negative: given back), most bytes.
-- Returns 1 when charged, 0 when that would pass the most.
local n = tonumber(ARGV[1])
if n > 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used + n > tonumber(ARGV[2]) then
    return 0
  end
  redis.call('INCRBY', KEYS[1], n)
elseif n < 0 then
  if redis.call('DECRBY', KEYS[1], -n) < 0 then
    redis.call('SET', KEYS[1], 0)
  end
end
return 1
""",
)


class SharedFiles:
    """The calls Files, Uploads and batches make on one ``RedisStore``."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def _bytes_key(self) -> str:
        return self.store.key("files", "bytes")

    def _keys(self, namespace: str) -> list[str | bytes | int]:
        return list(self.store.kv_keys(namespace))

    def add(
        self,
        namespace: str,
        id: str,
        blob: bytes,
        most: int,
        size: int = 0,
        total: int = 0,
        force: bool = False,
    ) -> defer.Deferred[int]:
        """Keep ``blob`` as ``id`` unless ``most`` are kept or ``size`` more
        bytes would pass ``total``: ADDED, TOO_MANY or TOO_LARGE."""
        keys = [*self._keys(namespace), self._bytes_key()]
        args: list[str | bytes | int] = [id, blob, most, size, total, int(force)]
        return self.store.script(KV_ADD, keys, args).addCallback(int)

    def drop(self, namespace: str, id: str, size: int = 0) -> defer.Deferred[bool]:
        """Forget ``id`` and give its ``size`` bytes back; whether it was there
        (two processes deleting one file give its bytes back once)."""
        keys = [*self._keys(namespace)[:2], self._bytes_key()]
        return self.store.script(KV_DROP, keys, [id, size]).addCallback(bool)

    def charge(self, size: int, total: int) -> defer.Deferred[bool]:
        """Count ``size`` bytes (negative: give back); False past ``total``."""
        d = self.store.script(CHARGE_BYTES, [self._bytes_key()], [size, total])
        return d.addCallback(bool)

    def used(self) -> defer.Deferred[int]:
        d = self.store.command("GET", self._bytes_key())
        return d.addCallback(lambda raw: int(raw or 0))

    # --- an Upload's parts ---------------------------------------------------

    def _parts_key(self, upload_id: str) -> str:
        return self.store.key("uploads", upload_id, "parts")

    def part_add(
        self, upload_id: str, part_id: str, blob: bytes
    ) -> defer.Deferred[object]:
        key = self._parts_key(upload_id)
        d = self.store.command("HSET", key, part_id, blob)
        # Sent after it on the same connection: the hash exists by then.
        self.store.guard(self.store.command("EXPIRE", key, PARTS_TTL_S), "parts ttl")
        return d

    def parts(self, upload_id: str) -> defer.Deferred[Sequence[bytes]]:
        d = self.store.command("HVALS", self._parts_key(upload_id))
        return d.addCallback(list)

    def close(self, upload_id: str) -> defer.Deferred[bool]:
        """Whether this caller is the one that completes or cancels the
        Upload: of two processes asked at once, one gets it."""
        d = self.store.command(
            "SET", self._closing_key(upload_id), b"1", "NX", "EX", PARTS_TTL_S
        )
        return d.addCallback(lambda reply: reply is not None)

    def reopen(self, upload_id: str) -> defer.Deferred[object]:
        """``close`` undone: the complete was refused, the Upload stays pending."""
        return self.store.command("DEL", self._closing_key(upload_id))

    def _closing_key(self, upload_id: str) -> str:
        return self.store.key("uploads", upload_id, "closing")

    def parts_drop(self, upload_id: str) -> defer.Deferred[object]:
        return self.store.command("DEL", self._parts_key(upload_id))
