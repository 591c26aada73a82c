"""The Lua the Redis store runs: each script one atomic step of shared state.

Plain strings (and their SHA1, for EVALSHA); no client, no Twisted.  Every
script takes the keys it touches in KEYS (already prefixed by the caller),
reads the time from Redis's own ``TIME`` (so processes on different hosts
agree) and returns numbers that are not integers as strings (``%.17g``,
``inf``): a Lua number in a reply would be truncated to an integer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Script:
    name: str
    source: bytes = field(repr=False)
    #: What EVALSHA calls it by.
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source).hexdigest())


# Shared by the scripts that use them.
_COMMON = """
-- Seconds since the epoch, by the Redis server's clock.
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A float that survives the trip: 17 significant digits, or inf.
local function num(x)
  return string.format('%.17g', x)
end
"""

# Token buckets.  Bucket i is KEYS[first_key + i - 1] with ARGV triples
# (limit per minute, capacity, amount) from ARGV[first_arg].  A bucket is a
# hash {available, updated, limit, capacity}; absent means full.  A stored
# limit or capacity other than the given one starts the bucket afresh (as
# the in-process limiter does when the config changes).
_BUCKETS = """
-- Each bucket refilled to `now`, and whether every one covers its amount.
local function buckets_read(first_key, first_arg, n, now)
  local states, ok = {}, true
  for i = 1, n do
    local a = first_arg + (i - 1) * 3
    local limit, capacity, amount =
      tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local key = KEYS[first_key + i - 1]
    local rate = limit / 60
    local h = redis.call('HMGET', key, 'available', 'updated', 'limit', 'capacity')
    local available, updated = tonumber(h[1]), tonumber(h[2])
    if available == nil or updated == nil
        or tonumber(h[3]) ~= limit or tonumber(h[4]) ~= capacity then
      available, updated = capacity, now
    elseif now > updated then
      -- continuous refill; a clock that went back refills nothing
      available = math.min(capacity, available + (now - updated) * rate)
      updated = now
    end
    if amount > available then ok = false end
    states[i] = {key, ARGV[a], rate, capacity, amount, available, updated}
  end
  return states, ok
end

-- Charge every bucket (charge true) or none; per bucket
-- {available, wait, reset} as strings.  A refused request writes nothing:
-- the refill is a pure function of the stored state and the time.
local function buckets_finish(states, charge)
  local out = {}
  for i, s in ipairs(states) do
    local key, limit, rate, capacity, amount, available, updated = unpack(s)
    local wait = 0
    if charge then
      available = available - amount
      -- full again after this long; a full bucket is the same as none
      local full_ms = math.ceil((capacity - available) / rate * 1000)
      if full_ms > 0 then
        redis.call('HSET', key, 'available', num(available),
          'updated', num(updated), 'limit', limit, 'capacity', num(capacity))
        redis.call('PEXPIRE', key, full_ms)
      else
        redis.call('DEL', key)
      end
    elseif amount > capacity then
      wait = math.huge  -- never: the request is larger than the bucket
    else
      wait = math.max(0, (amount - available) / rate)
    end
    out[i] = {num(available), num(wait), num((capacity - available) / rate)}
  end
  return out
end
"""

ADMIT = Script(
    "admit",
    (
        _COMMON
        + _BUCKETS
        + """
-- KEYS: rules version, nb buckets, then one counter per candidate of every
--       question, in order.
-- ARGV: known version, nb, nb x (limit, capacity, amount), nq, then per
--       question: its number of candidates and each one's times (-1: no
--       limit).
-- Returns {stale, stored version, admitted, buckets, picks}.
local stored = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if stored ~= tonumber(ARGV[1]) then
  -- the caller's rules are stale: it must refresh them first; nothing moves
  return {1, stored, 0, {}, {}}
end
local nb = tonumber(ARGV[2])
local states, ok = buckets_read(2, 3, nb, now_s())
local buckets = buckets_finish(states, ok)
local picks = {}
if ok then
  -- per question the first candidate with times left (or no limit)
  local a = 3 + 3 * nb
  local nq = tonumber(ARGV[a])
  a = a + 1
  local k = 2 + nb
  for q = 1, nq do
    local nc = tonumber(ARGV[a])
    a = a + 1
    local chosen, hits = -1, 0
    for c = 1, nc do
      local key, times = KEYS[k], tonumber(ARGV[a])
      k, a = k + 1, a + 1
      if chosen < 0 then
        if times < 0 then
          hits = redis.call('HINCRBY', key, 'hits', 1)
          chosen = c - 1
        else
          -- `left` starts at `times` on first use; 0 means used up
          local left = tonumber(redis.call('HGET', key, 'left')) or times
          if left > 0 then
            hits = redis.call('HINCRBY', key, 'hits', 1)
            redis.call('HSET', key, 'left', left - 1)
            chosen = c - 1
          end
        end
      end
    end
    picks[q] = {chosen, hits}
  end
end
return {0, stored, ok and 1 or 0, buckets, picks}
"""
    ).encode(),
)

CHARGE = Script(
    "charge",
    (
        _COMMON
        + _BUCKETS
        + """
-- KEYS: the buckets.  ARGV: per bucket (limit, capacity, amount).
-- Returns {admitted, buckets}: all charged or none.
local states, ok = buckets_read(1, 1, #KEYS, now_s())
return {ok and 1 or 0, buckets_finish(states, ok)}
"""
    ).encode(),
)

RELEASE = Script(
    "release",
    b"""
-- KEYS: one counter per claim to undo (a key may repeat).  A counter that
-- is gone (reset since) or at 0 hits is left alone.  Returns how many.
local n = 0
for _, key in ipairs(KEYS) do
  local hits = tonumber(redis.call('HGET', key, 'hits'))
  if hits and hits > 0 then
    redis.call('HINCRBY', key, 'hits', -1)
    if redis.call('HEXISTS', key, 'left') == 1 then
      redis.call('HINCRBY', key, 'left', 1)
    end
    n = n + 1
  end
end
return n
""",
)

COUNTERS = Script(
    "counters",
    b"""
-- KEYS: counters.  Returns per key {hits, left} (nil when absent).
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, 'hits', 'left')
end
return out
""",
)

RULES_GET = Script(
    "rules_get",
    b"""
-- KEYS: version, first, last.  Returns {version (0: none), first, last}.
return {
  tonumber(redis.call('GET', KEYS[1]) or '0') or 0,
  redis.call('LRANGE', KEYS[2], 0, -1),
  redis.call('LRANGE', KEYS[3], 0, -1),
}
""",
)

RULES_PUT = Script(
    "rules_put",
    (
        _COMMON
        + """
-- KEYS: version, first, last.
-- ARGV: expected version, how many of the blobs are `first`, the channel to
--       publish on, then the blobs (first's, then last's).
-- Returns the new version, or nil when the stored one is not the expected.
local stored = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if stored ~= tonumber(ARGV[1]) then
  return false
end
if stored == 0 then
  -- No version (never set, or lost with the data): number from the clock
  -- in ms, so a version a client still holds from before a restart that
  -- lost the data cannot come round again (no ABA).
  redis.call('SET', KEYS[1], math.floor(now_s() * 1000))
end
redis.call('DEL', KEYS[2], KEYS[3])
local nf = tonumber(ARGV[2])
for i = 4, 3 + nf do
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
for i = 4 + nf, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[3], version)
return version
"""
    ).encode(),
)

JOURNAL_APPEND = Script(
    "journal_append",
    b"""
-- KEYS: the list, its byte count.  ARGV: size, max bytes, then the records,
-- oldest first (a batch).  Drops the oldest while more than `size` records
-- or `max` bytes, but the newest always stays (as the in-process journal).
-- Returns the length.
local size, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[2])) or 0
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  total = total + #ARGV[i]
end
local n = redis.call('LLEN', KEYS[1])
while n > 1 and (n > size or total > max) do
  local old = redis.call('LPOP', KEYS[1])
  total = total - #old
  n = n - 1
end
if n == 1 then
  total = #redis.call('LINDEX', KEYS[1], 0)  -- resynchronise a drifted count
end
redis.call('SET', KEYS[2], total)
return n
""",
)

JOURNAL_CLEAR = Script(
    "journal_clear",
    b"""
-- KEYS: the list, its byte count.  Returns how many records there were.
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
""",
)

KV_PUT = Script(
    "kv_put",
    b"""
-- KEYS: blobs (hash id -> blob), index (zset id by use), sequence.
-- ARGV: id, blob, size.  Keeps the `size` most recently used; returns how
-- many older ones it removed.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over <= 0 then
  return 0
end
local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
for _, id in ipairs(old) do
  redis.call('HDEL', KEYS[1], id)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
return #old
""",
)

KV_GET = Script(
    "kv_get",
    b"""
-- KEYS: blobs, index, sequence.  ARGV: id.  The blob or nil; a hit is
-- marked most recently used.
local blob = redis.call('HGET', KEYS[1], ARGV[1])
if blob then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
end
return blob
""",
)

KV_DELETE = Script(
    "kv_delete",
    b"""
-- KEYS: blobs, index.  ARGV: id.  Returns 1 when there was one.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
""",
)

ALL = (
    ADMIT,
    CHARGE,
    RELEASE,
    COUNTERS,
    RULES_GET,
    RULES_PUT,
    JOURNAL_APPEND,
    JOURNAL_CLEAR,
    KV_PUT,
    KV_GET,
    KV_DELETE,
)
