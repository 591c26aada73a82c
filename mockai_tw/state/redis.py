"""The shared-state store on Redis (or Valkey): one atomic script per step.

Why txredisapi: it is a Twisted protocol, so a call is a write on the
reactor's socket and a Deferred fired by ``dataReceived`` -- no thread per
call (redis-py would need ``deferToThread`` and its pool) and no second event
loop (the asyncio clients).  It reconnects through ``ClientService`` with
backoff.  We use its protocol and pool slots and send commands straight to a
live connection, so a call fails at once (``StoreUnavailable``) while Redis
is away instead of waiting for it to come back.

Every key starts with ``prefix`` so several mock servers share one Redis.
The scripts (``scripts.py``) read the time with ``TIME`` on the server, so
processes on different hosts agree.  Each public operation is one round
trip (``reset_counters`` walks the keyspace with SCAN, a control operation);
a script unknown to Redis (``NOSCRIPT``: restarted, ``SCRIPT FLUSH``) is
loaded again and retried on the same connection, one round trip more.
Not here: what a rule, a rate limit or a journal record means.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi  # type: ignore[import-untyped]

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import (
    HostnameEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mockai_tw.state import scripts
from mockai_tw.state.scripts import Script
from mockai_tw.state.types import (
    AdmitResult,
    BucketCharge,
    BucketState,
    Candidate,
    ChargeResult,
    Counter,
    Pick,
    RulesSnapshot,
    StoreError,
    StoreUnavailable,
    check_buckets,
    check_questions,
)
from mockai_tw.state.url import StateUrl, parse_url

log = Logger()

DEFAULT_PREFIX = "mockai:"
_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")

Arg = str | bytes | int


def _num(value: float) -> str:
    """A float as Redis (and Lua's tonumber) reads it back exactly."""
    return repr(float(value))


def _float(value: bytes) -> float:
    return float(value)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """An endpoint that remembers why the last connection attempt failed."""

    def __init__(self, wrapped: IStreamClientEndpoint, store: RedisStore) -> None:
        self._wrapped = wrapped
        self._store = store

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            self._store._last_error = failure.getErrorMessage()
            return failure

        return self._wrapped.connect(factory).addErrback(failed)


def _command(args: tuple[Any, ...]) -> bytes | None:
    """RESP for ``args`` when all are str, bytes or int (what we send), else
    None.  txredisapi's own builder encodes each argument twice over; this
    was 38% of the client's CPU per ``admit``."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes):
            return None
        out += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(out)


class _FastBuild:
    def _build_command(self, *args: Any, **kwargs: Any) -> bytes:
        built = _command(args)
        if built is None:
            built = super()._build_command(*args, **kwargs)  # type: ignore[misc]
        return built


class _PythonProtocol(_FastBuild, txredisapi.BaseRedisProtocol):
    """The pure-Python reply parser (a reactor turn per bulk string)."""


_PROTOCOLS: dict[bool, type] = {False: _PythonProtocol}
if txredisapi.hiredis is not None:

    class _HiredisProtocol(_FastBuild, txredisapi.HiredisProtocol):
        """Replies parsed by hiredis (C), when it is installed."""

    _PROTOCOLS[True] = _HiredisProtocol


class _Factory(txredisapi.RedisFactory):
    """txredisapi's pool factory, telling the store of every connection made
    usable and lost."""

    noisy = False

    def __init__(self, store: RedisStore, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        # Nobody waits on the lazy pool's "complete" Deferred; a failure to
        # authenticate would otherwise be an unhandled error in it.
        self.deferred.addErrback(lambda _f: None)

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.store._connection_made(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.store._connection_lost(conn)

    def connectionError(self, why: str) -> None:
        # AUTH or SELECT refused: txredisapi stops reconnecting for good.
        self.store._fatal(why)
        if self.deferred:
            super().connectionError(why)


class _SubscriberProtocol(txredisapi.SubscriberProtocol):
    """Subscribes to the rules channel on every (re)connection."""

    def connectionMade(self) -> defer.Deferred[None]:
        d: defer.Deferred[Any] = super().connectionMade()
        d.addCallback(lambda _: self._subscribe() if self._ready else None)
        return d

    def _subscribe(self) -> defer.Deferred[None]:
        subscription: Subscription = self.factory.subscription
        d: defer.Deferred[Any] = self.subscribe(subscription.channel)
        d.addCallback(lambda _: subscription._subscribed())
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Failure) -> None:
        # Lost meanwhile: the next connection subscribes again.
        if not failure.check(txredisapi.ConnectionError):
            log.failure("Redis rules SUBSCRIBE failed", failure)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        try:
            version = int(message)
        except (TypeError, ValueError):
            return
        self.factory.subscription._notify(version)


class _SubscriberFactory(txredisapi.RedisFactory):
    protocol = _SubscriberProtocol
    noisy = False

    def __init__(self, subscription: Subscription, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.subscription = subscription
        self.deferred.addErrback(lambda _f: None)


class Subscription:
    """Rules-changed notices on a connection of their own.

    ``callback(version)`` on every change published; ``callback(None)`` after
    a reconnection (notices may have been missed: read the rules again).
    A convenience: admit's version check is what keeps answers right.
    """

    def __init__(self, channel: str, callback: Callable[[int | None], object]):
        self.channel = channel
        self.callback = callback
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._factory: _SubscriberFactory | None = None

    def _subscribed(self) -> None:
        if not self.ready.called:
            self.ready.callback(None)
        else:
            self._notify(None)

    def _notify(self, version: int | None) -> None:
        try:
            self.callback(version)
        except Exception:
            log.failure("rules subscription callback failed")

    def close(self) -> defer.Deferred[None]:
        if self._factory is None:
            return defer.succeed(None)
        factory, self._factory = self._factory, None
        d: defer.Deferred[None] = factory.disconnect()
        return d.addCallback(lambda _: None)


class RedisStore:
    """Rate-limit buckets, rule counters, runtime rules, the journal and
    keyed blobs (the Responses store) in one Redis, shared by every process
    that points at it.

    The connection is made in the background; ``wait_connected`` is for
    start-up, ``connected`` and ``watch_connection`` for readiness.  While
    Redis is away every call fails at once with ``StoreUnavailable``.
    ``hiredis``: parse replies with hiredis (default: when it is installed;
    about twice the throughput of txredisapi's Python parser).
    """

    def __init__(
        self,
        url: str | StateUrl,
        prefix: str = DEFAULT_PREFIX,
        *,
        connect_timeout: float = 5.0,
        reply_timeout: float = 5.0,
        poolsize: int = 1,
        reconnect_delay: tuple[float, float] = (0.5, 5.0),
        hiredis: bool | None = None,
    ) -> None:
        self.url = url if isinstance(url, StateUrl) else parse_url(url)
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self._connected = False
        self._closing = False
        self._closed: defer.Deferred[Any] | None = None
        self._fatal_error: str | None = None
        self._last_error: str | None = None
        self._watchers: list[Callable[[bool], object]] = []
        self._waiters: list[defer.Deferred[None]] = []
        self._logged: set[str] = set()
        self._next = 0
        self._subscriptions: list[Subscription] = []
        self._reconnect_delay = reconnect_delay
        self._endpoint = _RecordingEndpoint(self._make_endpoint(), self)
        if hiredis is None:
            hiredis = True in _PROTOCOLS
        elif hiredis not in _PROTOCOLS:
            raise ValueError("hiredis is not installed")
        self._factory = self._make_factory(_Factory, self, poolsize=poolsize)
        self._factory.protocol = _PROTOCOLS[hiredis]
        self._factory.startConnecting(self._endpoint)

    # -- connection -----------------------------------------------------

    def _make_endpoint(self) -> IStreamClientEndpoint:
        url = self.url
        if url.unix:
            return UNIXClientEndpoint(_reactor, url.path, timeout=self.connect_timeout)
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            _reactor, url.host, url.port, timeout=self.connect_timeout
        )
        if url.tls:
            trust = None
            if url.ssl_ca_certs:
                with open(url.ssl_ca_certs, "rb") as f:
                    trust = Certificate.loadPEM(f.read())
            endpoint = wrapClientTLS(
                optionsForClientTLS(url.host, trustRoot=trust), endpoint
            )
        return endpoint

    def _make_factory(self, cls: type, *first: Any, poolsize: int = 1) -> Any:
        url = self.url
        subscriber = cls is _SubscriberFactory
        factory = cls(
            *first,
            url.redacted,
            None if subscriber else url.db,
            poolsize,
            isLazy=True,
            charset=None,
            password=url.password,
            replyTimeout=None if subscriber else self.reply_timeout,
            convertNumbers=False,
            username=url.username,
        )
        factory.reconnect = True
        factory.initialDelay, factory.maxDelay = self._reconnect_delay
        return factory

    @property
    def connected(self) -> bool:
        """Whether a connection to Redis is up and ready for commands."""
        return self._connected

    def watch_connection(
        self, callback: Callable[[bool], object]
    ) -> Callable[[], None]:
        """Call ``callback(True)`` when the store connects (again) and
        ``callback(False)`` when it loses Redis.  Returns the way to stop."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def _connection_made(self, conn: Any) -> None:
        # Load every script up front, pipelined ahead of any other command on
        # this connection, so nothing meets NOSCRIPT after a restart.
        for script in scripts.ALL:
            d = self._send(conn, ("SCRIPT", "LOAD", script.source))
            # Lost before the reply: the loss is told on its own; NOSCRIPT
            # recovery covers the script.
            d.addErrback(lambda f: f.trap(txredisapi.ConnectionError) and None)
            self.guard(d, "SCRIPT LOAD")
        self._last_error = None
        if self._connected:
            return
        self._connected = True
        self._logged.clear()
        # Watchers first: a waiter's callback may run a caller that adds one.
        self._tell(True)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _connection_lost(self, conn: Any) -> None:
        if not self._connected or any(c.connected for c in self._factory.pool):
            return
        self._connected = False
        if not self._closing:
            log.warn("Redis connection lost: {url}", url=self.url.redacted)
            self._tell(False)

    def _fatal(self, why: str) -> None:
        self._fatal_error = why
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(self._unavailable(why))

    def _tell(self, up: bool) -> None:
        for callback in list(self._watchers):
            try:
                callback(up)
            except Exception:
                log.failure("Redis connection watcher failed")

    def _unavailable(self, why: str) -> StoreUnavailable:
        return StoreUnavailable(f"state.url {self.url.redacted}: {why}")

    def wait_connected(self, timeout: float = 5.0) -> defer.Deferred[None]:
        """Fires once connected; fails with ``StoreUnavailable`` (naming
        ``state.url``, redacted) when Redis is not there within ``timeout``
        seconds or refused our password.  For start-up."""
        if self._fatal_error is not None:
            return defer.fail(self._unavailable(self._fatal_error))
        if self._connected:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)

        def expire() -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                why = f" ({self._last_error})" if self._last_error else ""
                waiter.errback(
                    self._unavailable(f"Redis not reachable within {timeout:g}s{why}")
                )

        timer = _reactor.callLater(timeout, expire)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return waiter.addBoth(done)

    def close(self) -> defer.Deferred[None]:
        """Close every connection and stop reconnecting (again: no-op)."""
        if self._closed is None:
            self._closing = True
            self._connected = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.errback(self._unavailable("the store was closed"))
            closing = [self._factory.disconnect()]
            closing += [s.close() for s in self._subscriptions]
            self._subscriptions = []
            self._closed = defer.gatherResults(closing, consumeErrors=True)
        done: defer.Deferred[None] = defer.Deferred()

        def fire(result: object) -> object:
            done.callback(None)
            return result

        self._closed.addBoth(fire)
        return done

    # -- calls ----------------------------------------------------------

    def _conn(self) -> Any:
        if self._closing:
            raise self._unavailable("the store was closed")
        pool = [c for c in self._factory.pool if c.connected]
        if not pool:
            why = self._fatal_error or "not connected to Redis"
            raise self._unavailable(why)
        self._next = (self._next + 1) % len(pool)
        return pool[self._next]

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            return failure
        if failure.check(txredisapi.ConnectionError):
            return Failure(self._unavailable(failure.getErrorMessage()))
        if failure.check(txredisapi.RedisError):
            return Failure(StoreError(failure.getErrorMessage()))
        return failure

    def _send(self, conn: Any, args: tuple[Arg, ...]) -> defer.Deferred[Any]:
        try:
            d: defer.Deferred[Any] = conn.execute_command(*args)
        except Exception:
            return defer.fail()
        return d

    def _call(self, *args: Arg) -> defer.Deferred[Any]:
        try:
            conn = self._conn()
        except StoreError:
            return defer.fail()
        return self._send(conn, args).addErrback(self._translate)

    def _eval(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg] = ()
    ) -> defer.Deferred[Any]:
        try:
            conn = self._conn()
        except StoreError:
            return defer.fail()
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        def noscript(failure: Failure) -> defer.Deferred[Any] | Failure:
            if not (
                failure.check(txredisapi.ResponseError)
                and failure.getErrorMessage().startswith("NOSCRIPT")
                and conn.connected
            ):
                return failure
            # Load and call again back to back: one more round trip.
            self.guard(self._send(conn, ("SCRIPT", "LOAD", script.source)), "load")
            return self._send(conn, command)

        d = self._send(conn, command).addErrback(noscript)
        return d.addErrback(self._translate)

    def script(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg] = ()
    ) -> defer.Deferred[Any]:
        """Run ``script`` (for the modules that own their scripts: files.py)."""
        return self._eval(script, keys, args)

    def command(self, *args: Arg) -> defer.Deferred[Any]:
        """One plain command (failures translated as every call's are)."""
        return self._call(*args)

    def guard(self, d: defer.Deferred[Any], what: str) -> None:
        """Let ``d`` run in the background: a failure is logged, once per
        ``what`` until the store connects again, and consumed."""

        def failed(failure: Failure) -> None:
            if not self._closing and what not in self._logged:
                self._logged.add(what)
                # One line, no traceback: an outage is expected, not a bug.
                log.warn(
                    "Redis {what} failed ({url}): {why}; further failures not"
                    " logged until Redis is back",
                    what=what,
                    url=self.url.redacted,
                    why=failure.getErrorMessage(),
                )

        d.addErrback(failed)

    def ping(self) -> defer.Deferred[float]:
        """The round trip to Redis, in seconds."""
        start = time.perf_counter()
        return self._call("PING").addCallback(lambda _: time.perf_counter() - start)

    def key(self, *parts: str) -> str:
        """A key of ours: the prefix, then the parts joined by ``:``."""
        return self.prefix + ":".join(parts)

    # -- budgets and rule counters -------------------------------------

    def _bucket_args(self, buckets: list[BucketCharge]) -> tuple[list[Arg], list[Arg]]:
        keys: list[Arg] = [self.key("bucket", b.key) for b in buckets]
        args: list[Arg] = []
        for b in buckets:
            args += [b.limit, _num(b.capacity), _num(b.amount)]
        return keys, args

    @staticmethod
    def _bucket_states(raw: list[list[bytes]]) -> tuple[BucketState, ...]:
        return tuple(BucketState(*map(_float, row)) for row in raw)

    def admit(
        self,
        version: int,
        buckets: Sequence[BucketCharge | tuple[str, int, float, float]] = (),
        questions: Sequence[Sequence[Candidate | tuple[str, int]]] = (),
    ) -> defer.Deferred[AdmitResult]:
        """One request's admission, atomically, in one round trip:

        - rules ``version`` differs from the stored one: ``stale``, nothing
          changes;
        - every bucket covers its amount: all are charged (``admitted``),
          else none is;
        - admitted: per question (a list of candidate rules in priority
          order) the first with times left takes a hit.
        """
        try:
            checked = check_buckets(buckets)
            asked = check_questions(questions)
        except ValueError as e:
            return defer.fail(e)
        bkeys, bargs = self._bucket_args(checked)
        keys: list[Arg] = [self.key("rules", "version"), *bkeys]
        args: list[Arg] = [int(version), len(checked), *bargs, len(asked)]
        for candidates in asked:
            args.append(len(candidates))
            for candidate in candidates:
                keys.append(self.key("counter", candidate.counter))
                args.append(candidate.times)

        def parse(raw: list[Any]) -> AdmitResult:
            stale, stored, admitted, states, picks = raw
            return AdmitResult(
                stale=bool(stale),
                version=int(stored),
                admitted=bool(admitted),
                buckets=self._bucket_states(states),
                picks=tuple(Pick(int(i), int(h)) for i, h in picks),
            )

        return self._eval(scripts.ADMIT, keys, args).addCallback(parse)

    def charge(
        self, buckets: Sequence[BucketCharge | tuple[str, int, float, float]]
    ) -> defer.Deferred[ChargeResult]:
        """Charge every bucket its amount, or none when one cannot cover it."""
        try:
            checked = check_buckets(buckets)
        except ValueError as e:
            return defer.fail(e)
        keys, args = self._bucket_args(checked)

        def parse(raw: list[Any]) -> ChargeResult:
            return ChargeResult(bool(raw[0]), self._bucket_states(raw[1]))

        return self._eval(scripts.CHARGE, keys, args).addCallback(parse)

    def release(self, counters: Sequence[str]) -> defer.Deferred[int]:
        """Undo claims (``AdmitResult.claimed``): a hit less and a time more
        for each counter named (as often as named).  Returns how many."""
        if not counters:
            return defer.succeed(0)
        keys: list[Arg] = [self.key("counter", c) for c in counters]
        return self._eval(scripts.RELEASE, keys).addCallback(int)

    def counters(self, names: Sequence[str]) -> defer.Deferred[dict[str, Counter]]:
        """Each counter's hits and times left (``Counter(0, None)`` unused)."""
        if not names:
            return defer.succeed({})
        keys: list[Arg] = [self.key("counter", n) for n in names]

        def parse(raw: list[list[bytes | None]]) -> dict[str, Counter]:
            return {
                name: Counter(
                    int(hits) if hits is not None else 0,
                    int(left) if left is not None else None,
                )
                for name, (hits, left) in zip(names, raw, strict=True)
            }

        return self._eval(scripts.COUNTERS, keys).addCallback(parse)

    def delete_counters(self, names: Sequence[str]) -> defer.Deferred[int]:
        """Forget these counters (a rule replaced or deleted: fresh counters
        next time).  Returns how many there were."""
        if not names:
            return defer.succeed(0)
        keys = [self.key("counter", n) for n in names]
        return self._call("UNLINK", *keys).addCallback(int)

    def reset_counters(self) -> defer.Deferred[int]:
        """Delete every rule counter under the prefix (walking with SCAN, so
        Redis never blocks on the whole keyspace).  Returns how many."""
        pattern = _glob_escape(self.key("counter", "")) + "*"

        async def walk() -> int:
            cursor: bytes | int = 0
            deleted = 0
            while True:
                cursor, found = await self._call(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", 1000
                )
                if found:
                    deleted += await self._call("UNLINK", *found)
                if int(cursor) == 0:
                    return deleted

        return defer.Deferred.fromCoroutine(walk())

    # -- runtime rules ---------------------------------------------------

    def _rules_keys(self) -> list[Arg]:
        return [
            self.key("rules", "version"),
            self.key("rules", "first"),
            self.key("rules", "last"),
        ]

    @property
    def rules_channel(self) -> str:
        return self.key("rules")

    def rules_get(self) -> defer.Deferred[RulesSnapshot]:
        """The runtime rules and their version, read together."""

        def parse(raw: list[Any]) -> RulesSnapshot:
            version, first, last = raw
            return RulesSnapshot(int(version), tuple(first), tuple(last))

        return self._eval(scripts.RULES_GET, self._rules_keys()).addCallback(parse)

    def rules_put(
        self, expected_version: int, first: Sequence[bytes], last: Sequence[bytes]
    ) -> defer.Deferred[int | None]:
        """Replace the runtime rules if they are still at ``expected_version``
        (compare-and-set): the new version, or None when someone else changed
        them first.  Publishes the new version on ``rules_channel``."""
        args: list[Arg] = [
            int(expected_version),
            len(first),
            self.rules_channel,
            *first,
            *last,
        ]

        def parse(raw: int | None) -> int | None:
            return None if raw is None else int(raw)

        d = self._eval(scripts.RULES_PUT, self._rules_keys(), args)
        return d.addCallback(parse)

    def subscribe(self, callback: Callable[[int | None], object]) -> Subscription:
        """Be told of rules changes (see ``Subscription``); its ``ready``
        fires once subscribed.  Closed with the store."""
        subscription = Subscription(self.rules_channel, callback)
        factory = self._make_factory(_SubscriberFactory, subscription)
        subscription._factory = factory
        self._subscriptions.append(subscription)
        factory.startConnecting(self._endpoint)
        return subscription

    # -- journal -----------------------------------------------------------

    def _journal_keys(self) -> list[Arg]:
        return [self.key("journal"), self.key("journal", "bytes")]

    def journal_append(
        self, records: bytes | Sequence[bytes], size: int, max_bytes: int
    ) -> defer.Deferred[int]:
        """Append a record (or a batch, oldest first), dropping the oldest
        while there are more than ``size`` or more than ``max_bytes`` (the
        newest always stays).  Returns the length; fire and forget with
        ``guard``."""
        batch = [records] if isinstance(records, bytes) else list(records)
        if not batch:
            return defer.succeed(0)
        args: list[Arg] = [int(size), int(max_bytes), *batch]
        d = self._eval(scripts.JOURNAL_APPEND, self._journal_keys(), args)
        return d.addCallback(int)

    def journal_all(self) -> defer.Deferred[list[bytes]]:
        """Every record, oldest first."""
        return self._call("LRANGE", self.key("journal"), 0, -1)

    def journal_len(self) -> defer.Deferred[int]:
        return self._call("LLEN", self.key("journal")).addCallback(int)

    def journal_clear(self) -> defer.Deferred[int]:
        """Forget every record; returns how many there were."""
        d = self._eval(scripts.JOURNAL_CLEAR, self._journal_keys())
        return d.addCallback(int)

    # -- keyed blobs: responses, later files and batches -----------------

    def kv_keys(self, namespace: str) -> list[Arg]:
        """A namespace's keys: blobs, index, sequence (ValueError when bad)."""
        return self._kv_keys(namespace)

    def _kv_keys(self, namespace: str) -> list[Arg]:
        if not namespace or not set(namespace) <= _NAMESPACE_CHARS:
            raise ValueError(f"namespace {namespace!r}: use [a-z0-9_-]")
        return [
            self.key("kv", namespace, "blobs"),
            self.key("kv", namespace, "index"),
            self.key("kv", namespace, "seq"),
        ]

    def kv_put(
        self, namespace: str, id: str, blob: bytes, size: int
    ) -> defer.Deferred[int]:
        """Keep ``blob`` as ``id``; at most ``size`` in the namespace, the
        least recently used go first.  Returns how many were dropped."""
        if size < 1:
            return defer.fail(ValueError("size must be 1 or more"))
        try:
            keys = self._kv_keys(namespace)
        except ValueError as e:
            return defer.fail(e)
        d = self._eval(scripts.KV_PUT, keys, [id, blob, int(size)])
        return d.addCallback(int)

    def kv_get(self, namespace: str, id: str) -> defer.Deferred[bytes | None]:
        """The blob kept as ``id`` (now the most recently used), or None."""
        try:
            keys = self._kv_keys(namespace)
        except ValueError as e:
            return defer.fail(e)
        return self._eval(scripts.KV_GET, keys, [id])

    def kv_delete(self, namespace: str, id: str) -> defer.Deferred[bool]:
        """Forget ``id``; whether there was one."""
        try:
            keys = self._kv_keys(namespace)[:2]
        except ValueError as e:
            return defer.fail(e)
        return self._eval(scripts.KV_DELETE, keys, [id]).addCallback(bool)

    def kv_all(self, namespace: str) -> defer.Deferred[list[bytes]]:
        """Every blob of the namespace (at most its ``size``), in no order;
        none is marked used."""
        try:
            keys = self._kv_keys(namespace)
        except ValueError as e:
            return defer.fail(e)
        return self._call("HVALS", keys[0]).addCallback(list)

    def response_keep(self, id: str, blob: bytes, size: int) -> defer.Deferred[int]:
        return self.kv_put("responses", id, blob, size)

    def response_get(self, id: str) -> defer.Deferred[bytes | None]:
        return self.kv_get("responses", id)

    def response_delete(self, id: str) -> defer.Deferred[bool]:
        return self.kv_delete("responses", id)
