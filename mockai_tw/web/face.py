"""What the web layer may ask of the running server: a small face, not the whole.

``MockServer`` provides it; the resources see only this, so a new endpoint
cannot reach into state it should not touch, and tests can stand a plain
object in its place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from mockai_tw.config import Config
    from mockai_tw.delivery import Ticker
    from mockai_tw.drain import Readiness
    from mockai_tw.engine.capacity import Capacity
    from mockai_tw.engine.chat import Engine
    from mockai_tw.engine.faults import FaultInjector
    from mockai_tw.engine.ratelimit import RateLimiter
    from mockai_tw.engine.responses import ResponseStore
    from mockai_tw.engine.rules import Rule, RuleBook
    from mockai_tw.files_store import FileStore, Uploads
    from mockai_tw.hooks import Hooks
    from mockai_tw.journal import Journal
    from mockai_tw.metrics import Metrics
    from mockai_tw.web.background import Jobs
    from mockai_tw.web.batches import Batches
    from mockai_tw.web.kept import Kept
    from mockai_tw.web.peers import Peers
    from mockai_tw.web.proxy import Recorder
    from mockai_tw.web.shared import Shared


class Face(Protocol):
    """Read at request time: a reload swaps ``config`` and ``engine`` whole."""

    version: str
    started: float
    # This process's index among the workers on one port (None when alone).
    worker: int | None
    clock: IReactorTime
    config: Config
    engine: Engine
    limiter: RateLimiter
    # Slots and queues (capacity:); ``enabled`` off: never entered.
    capacity: Capacity
    faults: FaultInjector
    ticker: Ticker
    hooks: Hooks
    # Whether to be sent new work (``/ready``): starting, ready or draining.
    readiness: Readiness
    # Kept responses, for ``previous_response_id`` and retrieval.
    responses: ResponseStore
    # Conversations and stored chat completions (this process, or shared).
    conversations: Kept
    completions: Kept
    # The background responses this process runs.
    background: Jobs
    # The accepted API keys, encoded once per config.
    token_bytes: tuple[bytes, ...]
    # Prometheus metrics (``GET /metrics``).
    metrics: Metrics
    # The sibling workers whose figures a scrape sums (None when alone).
    peers: Peers | None
    # The store every process shares (state.backend: redis), else None.
    shared: Shared | None
    # Uploaded files, Uploads and batches (this process's own).
    files: FileStore
    uploads: Uploads
    batches: Batches


class AdminFace(Face, Protocol):
    """What the control API may also touch: rules, journal, reload."""

    rules: RuleBook
    journal: Journal
    file_rules: tuple[Rule, ...]
    config_path: str | None
    # Record and replay (web/proxy.py): the book of recordings and its hits.
    recorder: Recorder

    def reload(self) -> Config: ...
