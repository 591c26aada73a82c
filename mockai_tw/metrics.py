"""Prometheus metrics: a hook subscriber and the registry ``GET /metrics`` reads.

``Metrics`` listens to the pipeline's hooks (mockai_tw/hooks.py) only while
``metrics.enabled`` is on, like the access log: off, it costs nothing per
request.  Each server has its own ``CollectorRegistry`` (never the global
one), so several servers in one process do not collide.  With several
workers, each keeps its own figures and the one scraped asks its siblings
for theirs and sums them (``merge``): the whole server's figures, and no cost
on the request path (prometheus_client's multiprocess mode doubles the cost
of every increment; benchmarks/README.md).  Exposition is
``prometheus_client``'s own ``generate_latest``, parsing its own parser.

The request path is kept short (benchmarks/README.md, "Metrics on and
off"): the end of a request finds everything it touches in one row per
(endpoint, model, status), its label children looked up once.  There its
counts (requests, tokens) add up as plain ints and its duration joins a
short list; they go into prometheus_client's counters (``inc``) and
histograms (``observe``, in a batch: ``OBSERVE_BATCH``) before anything
reads the registry (``_Registry.collect``), so every scrape shows every
request.  A stream's first chunk finds its histograms' children in one
lookup per (endpoint, model) too (``_StreamRow``); the count of open streams
is a plain int, set into its gauge at the same fold.  The other gauges are
set as they change.
``admitted`` is heard only when something needs it (vLLM's names,
capacity's queue).
"""

from __future__ import annotations

import collections
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from prometheus_client.values import MutexValue

from mockai_tw.engine.capacity import REFUSAL_CODES
from mockai_tw.hooks import Gaps, Hooks

if TYPE_CHECKING:
    from mockai_tw.journal import Journal

# Seconds, 1 ms to 60 s: time to first token and whole requests.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    60.0,
)
# Between two chunks of a stream: finer at the low end.
INTER_TOKEN_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Durations a row holds before it observes them (and at every read): in a
# loop prometheus_client's ``observe`` costs well under half what it does once
# amid each request's other work (benchmarks/README.md).  1: one by one.
OBSERVE_BATCH = 64
# Cached label children at most (label values are bounded; this is a guard).
MAX_CHILDREN = 10_000

# A client that went away before the end (nginx's convention).
DISCONNECTED = 499

# The pipeline's endpoint names by path tail, for requests refused before
# the pipeline named them (a 401 at /v1, a 404 model).
_TAILS = (
    (b"/chat/completions", "chat"),
    (b"/completions", "completions"),
    (b"/embeddings", "embeddings"),
    (b"/moderations", "moderations"),
)


def endpoint_of(request: Any) -> str:
    """The endpoint label: the pipeline's name, else one read from the path."""
    named = getattr(request, "endpoint", None)
    if named:
        return str(named)
    return _endpoint_at(request.path)


def _endpoint_at(path: bytes) -> str:
    for tail, name in _TAILS:
        if path.endswith(tail):
            return name
    if path.startswith(b"/v1/responses"):
        return "responses"
    if path.startswith(b"/v1/models"):
        return "models"
    return "other"


def merge(expositions: Sequence[bytes]) -> bytes:
    """Several workers' expositions as one: every sample summed across them
    (counters, histogram buckets, gauges), ``_created`` the earliest, and
    ``mockai_metrics_workers`` saying how many answered."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            kept = families.setdefault(family.name, family)
            earliest = family.name.endswith("_created")
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                seen = values.get(key)
                if seen is None:
                    values[key] = sample.value
                    if kept is not family:
                        kept.samples.append(sample)
                elif earliest:
                    values[key] = min(seen, sample.value)
                else:
                    values[key] = seen + sample.value
    registry = CollectorRegistry(auto_describe=False)
    merged = []
    for family in families.values():
        # One label set's samples together (a histogram's buckets, count, sum),
        # in the order label sets were first seen.
        groups: dict[tuple[tuple[str, str], ...], int] = {}
        for s in family.samples:
            groups.setdefault(_group(s.labels), len(groups))
        family.samples = sorted(
            (
                Sample(
                    s.name,
                    s.labels,
                    values[(family.name, s.name, tuple(sorted(s.labels.items())))],
                )
                for s in family.samples
            ),
            key=lambda s: groups[_group(s.labels)],
        )
        merged.append(family)
    workers = GaugeMetricFamily(
        "mockai_metrics_workers", "Workers whose figures this scrape sums."
    )
    workers.add_metric([], len(expositions))
    merged.append(workers)
    registry.register(_Fixed(merged))
    return generate_latest(registry)


def observe_gaps(child: Any, amounts: Sequence[float]) -> None:
    """``observe_all`` for a stream chunk's batch of gaps (``Metrics._gaps``),
    counted another way: the batch sorted once and cut at each bound
    (``bisect_right``: the amounts at or below it), a few cuts for the
    handful of buckets gaps fall in, where ``observe_all`` finds a bucket
    per amount (a quarter of a chunk's metrics cost).  The same counts and
    the same sum, added up in the same order; a batch whose sum is NaN (an
    amount sorting cannot place) and any other kind of child get
    ``observe_all``."""
    values = getattr(child, "_buckets", None)
    if type(child._sum) is not MutexValue or not values:
        observe_all(child, amounts)
        return
    child._raise_if_not_observable()
    total = child._sum.get()
    for amount in amounts:
        total += amount
    if total != total:
        observe_all(child, amounts)
        return
    ordered = sorted(amounts)
    size = len(ordered)
    child._sum.set(total)
    if not size:
        return
    bounds = child._upper_bounds
    # From the smallest amount's bucket up to the largest's: the last bound
    # is +Inf, at or above every amount that is not NaN.
    index = bisect_left(bounds, ordered[0])
    below = 0
    while below < size:
        upto = bisect_right(ordered, bounds[index], below)
        if upto > below:
            values[index].inc(upto - below)
            below = upto
        index += 1


def _group(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def observe_all(child: Any, amounts: Sequence[float]) -> None:
    """``child.observe(a)`` for each of ``amounts`` (a histogram's child), folded.

    ``observe`` scans the buckets and takes two locks per amount; a batch
    needs one add per bucket hit (``bisect``: the first bound at or above
    it, as ``observe`` finds) and the sum added up in the same order, so the
    same float.  Needs prometheus_client's single-process values; another
    kind (multiprocess mode) gets ``observe``.
    """
    values = getattr(child, "_buckets", None)
    if type(child._sum) is not MutexValue or not values:
        for amount in amounts:
            child.observe(amount)
        return
    child._raise_if_not_observable()
    hits = collections.Counter(map(partial(bisect_left, child._upper_bounds), amounts))
    total = child._sum.get()
    for amount in amounts:
        total += amount
    child._sum.set(total)
    for index, count in hits.items():
        values[index].inc(count)


class _Fixed:
    """A collector of metrics already gathered (the merged ones)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


class _Registry(CollectorRegistry):
    """A registry that folds what the rows hold pending into its metrics
    (``Metrics.flush``) before anything reads it: ``generate_latest``,
    ``get_sample_value`` and every other reader go through ``collect``."""

    def __init__(self, flush: Callable[[], None]) -> None:
        super().__init__(auto_describe=True)
        self.flush = flush

    def collect(self) -> Iterable[Metric]:
        self.flush()
        return super().collect()


class _Row:
    """What the end of a request touches, for one (endpoint, model, status):
    its label children, looked up once, and what they have yet to get
    (plain ints, durations not yet observed; ``Metrics.flush``)."""

    __slots__ = (
        "completion",
        "completion_tokens",
        "count",
        "duration",
        "durations",
        "e2e",
        "model",
        "prompt",
        "prompt_tokens",
        "requests",
        "v_generation",
        "v_prompt",
        "vllm",
    )

    def __init__(
        self, model: str, requests: Any, duration: Any, e2e: Any, vllm: bool
    ) -> None:
        self.model = model
        self.requests = requests
        self.duration = duration
        # vllm:e2e_request_latency_seconds's child (None: vllm naming off).
        self.e2e = e2e
        self.vllm = vllm
        # Pending: requests' durations, prompt and completion tokens.
        self.durations: list[float] = []
        self.count = 0
        self.prompt = 0
        self.completion = 0
        # The token counters' children (and vLLM's), made at the first
        # tokens: a model without any shows no token series.
        self.prompt_tokens: Any = None
        self.completion_tokens: Any = None
        self.v_prompt: Any = None
        self.v_generation: Any = None


class _Open:
    """What one request's metrics need between its events."""

    __slots__ = ("model", "running", "stream", "v_waiting", "waiting")

    def __init__(self) -> None:
        self.running = False
        # Counted as waiting for capacity (mockai_*, and vllm:* when named so).
        self.waiting = False
        self.v_waiting = False
        self.stream = False
        self.model = ""


class _StreamRow:
    """What a stream's first chunk touches, for one (endpoint, model): the
    time-to-first-token child and its list of amounts waiting (one of
    ``Metrics.pending``'s), and the ``Gaps`` its streams time their later
    writes into (``Metrics._sink``)."""

    __slots__ = ("sink", "ttft", "waiting")

    def __init__(self, ttft: Any, waiting: list[float], sink: Gaps) -> None:
        self.ttft = ttft
        self.waiting = waiting
        self.sink = sink


class Metrics:
    """The counters, histograms and gauges of one server (or worker)."""

    def __init__(
        self,
        hooks: Hooks,
        clock: Any,
        journal: Journal,
        models: Any = (),
    ) -> None:
        self.hooks = hooks
        self.clock = clock
        self.on = False
        self.vllm = False
        # Whether ``admitted`` is heard: only vllm naming and requests that
        # may wait for capacity need it.
        self.admitting = False
        # Known model names: a refused request's body may name any string,
        # and a label must not grow without bound.
        self.models: frozenset[str] = frozenset(models)
        self.registry = registry = _Registry(self.flush)
        self.open: dict[int, _Open] = {}
        # Label children already looked up (see _child).
        self.children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # The end of a request's children and pending counts, by
        # (endpoint, model, status code) (see _row).
        self.rows: dict[tuple[str, str, int], _Row] = {}
        # Amounts not yet observed, per histogram child: a stream's time to
        # its first chunk and every gap between its chunks, observed
        # OBSERVE_BATCH at a time (and all before anything reads the registry).
        self.pending: dict[int, tuple[Any, list[float]]] = {}
        # The ``Gaps`` streams time their writes into, by inter-token child.
        self.sinks: dict[int, Gaps] = {}
        # A stream's first chunk's children, by (endpoint, model).
        self.stream_rows: dict[tuple[str, str], _StreamRow] = {}
        # SSE streams open now: ``streams_open``'s value, set at each fold
        # (``flush``): its ``inc`` and ``dec`` take a lock twice per stream.
        self.open_streams = 0
        self.requests = Counter(
            "mockai_requests",
            "API requests answered, by endpoint, model and status"
            " (499: the client went away first).",
            ("endpoint", "model", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "mockai_request_duration_seconds",
            "From the request's arrival to its last byte.",
            ("endpoint", "model"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "mockai_time_to_first_token_seconds",
            "Streams: from the request's arrival to its first chunk.",
            ("endpoint", "model"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            "mockai_inter_token_latency_seconds",
            "Streams: between two chunks.",
            ("endpoint", "model"),
            buckets=INTER_TOKEN_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "mockai_prompt_tokens",
            "Prompt tokens of finished replies (their usage).",
            ("model",),
            registry=registry,
        )
        self.completion_tokens = Counter(
            "mockai_completion_tokens",
            "Completion tokens of finished replies (their usage).",
            ("model",),
            registry=registry,
        )
        self.streams_open = Gauge(
            "mockai_streams_open",
            "Server-sent event streams open now.",
            registry=registry,
        )
        self.faults = Counter(
            "mockai_faults_injected",
            "Faults dealt, by kind.",
            ("kind",),
            registry=registry,
        )
        self.rate_limited = Counter(
            "mockai_rate_limit_rejections",
            "Requests refused with 429 rate_limit_exceeded.",
            ("endpoint",),
            registry=registry,
        )
        self.waiting = Gauge(
            "mockai_requests_waiting",
            "Requests waiting for a capacity slot now (capacity:), by model.",
            ("model",),
            registry=registry,
        )
        self.capacity_refusals = Counter(
            "mockai_capacity_refusals",
            "Requests refused because the capacity queue was full"
            " (concurrency_limit_exceeded, server_overloaded).",
            ("endpoint", "model"),
            registry=registry,
        )
        self.rule_hits = Counter(
            "mockai_rule_hits",
            "Requests answered by a scenario rule, by rule id.",
            ("rule",),
            registry=registry,
        )
        self.reloads = Counter(
            "mockai_config_reloads",
            "Config reloads, by outcome (ok, refused).",
            ("outcome",),
            registry=registry,
        )
        records = Gauge(
            "mockai_journal_records",
            "Requests the journal holds now.",
            registry=registry,
        )
        records.set_function(lambda: len(journal))
        held = Gauge(
            "mockai_journal_bytes",
            "Bytes the journal's records take now.",
            registry=registry,
        )
        held.set_function(lambda: journal.held)
        # vLLM's names (metrics.naming: vllm), registered only then.
        self.vllm_metrics: tuple[Any, ...] = self._vllm()

    def _vllm(self) -> tuple[Any, ...]:
        label = ("model_name",)
        self.v_running = Gauge(
            "vllm:num_requests_running",
            "Requests in flight (admitted, not finished).",
            label,
            registry=None,
        )
        self.v_waiting = Gauge(
            "vllm:num_requests_waiting",
            "Requests waiting for a capacity slot.",
            label,
            registry=None,
        )
        self.v_queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time requests spent waiting for a capacity slot.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.v_ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.v_itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Inter-token latency.",
            label,
            buckets=INTER_TOKEN_BUCKETS,
            registry=None,
        )
        self.v_e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            label,
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.v_prompt = Counter(
            "vllm:prompt_tokens", "Prompt tokens.", label, registry=None
        )
        self.v_generation = Counter(
            "vllm:generation_tokens", "Generation tokens.", label, registry=None
        )
        return (
            self.v_running,
            self.v_waiting,
            self.v_ttft,
            self.v_itl,
            self.v_e2e,
            self.v_prompt,
            self.v_generation,
            self.v_queue,
        )

    # --- configuration ------------------------------------------------------

    def follow(self, config: Any) -> None:
        """Apply ``config.metrics`` (at start and at each reload)."""
        metrics = config.metrics
        self.models = frozenset(config.models)
        vllm = metrics.enabled and metrics.naming == "vllm"
        if vllm != self.vllm:
            # Rows hold vLLM's children or not: new ones from now on.
            self.flush()
            self.rows.clear()
            self.vllm = vllm
            for metric in self.vllm_metrics:
                if vllm:
                    self.registry.register(metric)
                else:
                    self.registry.unregister(metric)
        if vllm:
            # Every known model shows its figure, 0 until one waits (inc(0):
            # a reload must not reset what waits now).
            for model in self.models:
                self.v_waiting.labels(model).inc(0)
        on = bool(metrics.enabled)
        if on != self.on:
            # Streams open across the change keep their Gaps: what they timed
            # while on is folded in now, what they timed while off is dropped.
            self._fold_sinks()
            self.on = on
            change = self.hooks.on if on else self.hooks.off
            change("queued", self.queued)
            change("first_byte", self.first_byte)
            change("first_chunk", self.first_chunk)
            change("last_byte", self.finished)
            change("disconnected", self.disconnected)
            change("error", self.error)
            if not on:
                for state in self.open.values():
                    self._unwait(state)
                self.open.clear()
                self.open_streams = 0
                self.streams_open.set(0)
        # Some request may still wait (capacity turned off by this reload).
        waits = any(state.waiting for state in self.open.values())
        self._admitting(on and (vllm or config.capacity.enabled or waits))

    def _admitting(self, heard: bool) -> None:
        if heard != self.admitting:
            self.admitting = heard
            change = self.hooks.on if heard else self.hooks.off
            change("admitted", self.admitted)

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()

    def flush(self) -> None:
        """Fold what the rows hold pending into prometheus_client's metrics
        (the registry does before every read: see ``_Registry``)."""
        self.streams_open.set(self.open_streams)
        self._fold_sinks()
        for child, amounts in self.pending.values():
            if amounts:
                observe_all(child, amounts)
                amounts.clear()
        for row in self.rows.values():
            if row.durations:
                self._observe(row)
            if row.count:
                row.requests.inc(row.count)
                row.count = 0
            if row.prompt:
                row.prompt_tokens.inc(row.prompt)
                if row.v_prompt is not None:
                    row.v_prompt.inc(row.prompt)
                row.prompt = 0
            if row.completion:
                row.completion_tokens.inc(row.completion)
                if row.v_generation is not None:
                    row.v_generation.inc(row.completion)
                row.completion = 0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # --- hooks ----------------------------------------------------------------

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: prometheus_client's own lookup
        takes a lock and checks the labels on every call (the hot path)."""
        key = (id(metric), values)
        child = self.children.get(key)
        if child is None:
            if len(self.children) >= MAX_CHILDREN:
                self.children.clear()
            child = self.children[key] = metric.labels(*values)
        return child

    def _pending(self, child: Any) -> list[float]:
        """The amounts waiting to be observed into ``child``."""
        pending = self.pending.get(id(child))
        if pending is None:
            pending = self.pending[id(child)] = (child, [])
        return pending[1]

    def _state(self, request: Any) -> _Open:
        key = id(request)
        state = self.open.get(key)
        if state is None:
            state = self.open[key] = _Open()
        return state

    def _model(self, request: Any) -> str:
        model = getattr(request.reply, "model", None)
        if isinstance(model, str):
            return model
        return ""

    def queued(self, request: Any) -> None:
        """It waits for a capacity slot (``admitted`` when it starts)."""
        self._admitting(True)
        state = self._state(request)
        state.model = self._model(request) or self._asked(request)
        state.waiting = True
        self._child(self.waiting, state.model).inc()
        if self.vllm:
            state.v_waiting = True
            self._child(self.v_waiting, state.model).inc()

    def _unwait(self, state: _Open) -> None:
        if state.waiting:
            state.waiting = False
            self._child(self.waiting, state.model).dec()
        if state.v_waiting:
            state.v_waiting = False
            self._child(self.v_waiting, state.model).dec()

    def admitted(self, request: Any) -> None:
        queue_s = getattr(request, "queue_s", None)
        if queue_s is not None:  # through capacity: it may have waited
            waited = self.open.get(id(request))
            if waited is not None:
                self._unwait(waited)
            if self.vllm:
                model = self._model(request) or self._asked(request)
                self._child(self.v_queue, model).observe(queue_s)
        if self.vllm:
            state = self._state(request)
            state.running = True
            state.model = self._model(request) or self._asked(request)
            self._child(self.v_running, state.model).inc()

    def first_byte(self, request: Any, status: int) -> None:
        if request.stream is None or not request.api:
            return
        content_type = request.responseHeaders.getRawHeaders(b"content-type") or [b""]
        if not content_type[0].startswith(b"text/event-stream"):
            return
        key = id(request)
        state = self.open.get(key)
        if state is None:
            state = self.open[key] = _Open()
        state.stream = True
        self.open_streams += 1

    def first_chunk(self, request: Any, size: int, stream: Any) -> None:
        """A stream's time to its first chunk; its later writes time their
        gaps into its row's ``Gaps`` (delivery does, with no call per chunk)."""
        state = self.open.get(id(request))
        if state is None or not state.stream:
            return
        now = self.clock.seconds()
        endpoint = endpoint_of(request)
        model = self._model(request)
        key = (endpoint, model)
        row = self.stream_rows.get(key)
        if row is None:
            row = self._stream_row(key)
        stream.gaps = row.sink
        stream.last_write = now
        elapsed = max(0.0, now - request.started)
        waiting = row.waiting
        waiting.append(elapsed)
        if len(waiting) >= OBSERVE_BATCH:
            observe_all(row.ttft, waiting)
            waiting.clear()
        if self.vllm:
            self._child(self.v_ttft, model).observe(elapsed)

    def _stream_row(self, key: tuple[str, str]) -> _StreamRow:
        if len(self.stream_rows) >= MAX_CHILDREN:
            self.stream_rows.clear()
        endpoint, model = key
        itl = self._child(self.itl, endpoint, model)
        ttft = self._child(self.ttft, endpoint, model)
        row = self.stream_rows[key] = _StreamRow(
            ttft, self._pending(ttft), self._sink(itl, model)
        )
        return row

    def _sink(self, itl: Any, model: str) -> Gaps:
        """The ``Gaps`` of the streams whose gaps go to ``itl``: one per
        child, as ``_pending``'s lists, kept while rows come and go (a
        stream holds its own to the end), so ``flush`` finds every amount."""
        found = self.sinks.get(id(itl))
        if found is None:

            def fold(amounts: list[float]) -> None:
                self._gaps(itl, model, amounts)

            found = self.sinks[id(itl)] = Gaps(self.clock.seconds, fold, OBSERVE_BATCH)
        return found

    def _fold_sinks(self) -> None:
        for sink in self.sinks.values():
            if sink.amounts:
                sink.fold(sink.amounts)

    def _gaps(self, itl: Any, model: str, amounts: list[float]) -> None:
        """Gaps into their inter-token children (none while off: the streams
        opened before a reload turned metrics off still time theirs)."""
        if self.on:
            observe_gaps(itl, amounts)
            if self.vllm:
                observe_all(self._child(self.v_itl, model), amounts)
        amounts.clear()

    def error(self, request: Any, error: Any) -> None:
        if error.status == 429 and error.code == "rate_limit_exceeded":
            self._child(self.rate_limited, endpoint_of(request)).inc()
        elif REFUSAL_CODES.get(error.status) == error.code:
            model = self._asked(request)
            self._child(self.capacity_refusals, endpoint_of(request), model).inc()

    def disconnected(self, request: Any) -> None:
        self.finished(request, DISCONNECTED, False)

    def _asked(self, request: Any) -> str:
        """The model a refused request named, if it is a known one."""
        asked = getattr(request, "model", None)
        return asked if asked in self.models else ""

    def finished(
        self, request: Any, code: int | None = None, complete: bool = True
    ) -> None:
        """``last_byte`` (and ``disconnected``: its code 499, not complete).
        The hot path: one row lookup, plain ints, a list append."""
        if code is None:
            code = request.code
        if self.open:
            state = self.open.pop(id(request), None)
            if state is not None:
                self._close(state)
        if not request.api:  # (the web layer's: its path is an API's)
            return
        path: bytes = request.path
        reply = request.reply
        model = getattr(reply, "model", None)
        if not isinstance(model, str) or not model:
            model = self._asked(request)
        key = (getattr(request, "endpoint", None) or _endpoint_at(path), model, code)
        row = self.rows.get(key)
        if row is None:
            row = self._row(key)
        row.count += 1
        elapsed = self.clock.seconds() - request.started
        durations = row.durations
        durations.append(elapsed if elapsed > 0.0 else 0.0)
        if len(durations) >= OBSERVE_BATCH:
            self._observe(row)
        if request.fault:
            self._child(self.faults, request.fault).inc()
        rule = getattr(reply, "rule", None)
        if not rule and request.error is not None:
            rule = getattr(request.error, "rule", None)
        if rule:
            self._child(self.rule_hits, str(rule)).inc()
        if complete:
            usage = getattr(reply, "usage", None)
            if usage is not None:
                prompt = getattr(usage, "prompt_tokens", 0) or 0
                completion = getattr(usage, "completion_tokens", 0) or 0
                if prompt:
                    if row.prompt_tokens is None:
                        row.prompt_tokens = self._child(self.prompt_tokens, model)
                        if row.vllm:
                            row.v_prompt = self._child(self.v_prompt, model)
                    row.prompt += prompt
                if completion:
                    if row.completion_tokens is None:
                        counter = self.completion_tokens
                        row.completion_tokens = self._child(counter, model)
                        if row.vllm:
                            counter = self.v_generation
                            row.v_generation = self._child(counter, model)
                    row.completion += completion

    def _observe(self, row: _Row) -> None:
        observe_all(row.duration, row.durations)
        if row.e2e is not None:
            observe_all(row.e2e, row.durations)
        row.durations.clear()

    def _close(self, state: _Open) -> None:
        self._unwait(state)
        if state.stream:
            self.open_streams -= 1
        if state.running:
            self._child(self.v_running, state.model).dec()

    def _row(self, key: tuple[str, str, int]) -> _Row:
        if len(self.rows) >= MAX_CHILDREN:
            self.flush()
            self.rows.clear()
        endpoint, model, code = key
        vllm = self.vllm
        row = self.rows[key] = _Row(
            model,
            self._child(self.requests, endpoint, model, str(code)),
            self._child(self.duration, endpoint, model),
            self._child(self.v_e2e, model) if vllm else None,
            vllm,
        )
        return row
