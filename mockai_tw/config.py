"""The config schema: plain data -> validated, frozen config objects.

Every error names the key path (``stream.interval_ms: must be >= 0``) so the
daemon can stop with one clear line, and never prints a secret's value.  The
dataclasses below are the schema: field types drive conversion and
``metadata`` carries the bounds the shared checks (``checks.py``) apply.  A
leaf: it knows nothing of files, the environment, the rule parser
(``config_load.py`` joins them), Twisted or HTTP.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from mockai_tw import checks
from mockai_tw.checks import KeyPathError, Problem
from mockai_tw.fault_kinds import FAULT_KINDS
from mockai_tw.state.url import parse_url

if TYPE_CHECKING:
    from mockai_tw.engine.rules import Rule
    from mockai_tw.recording.files import Recording

#: The original Go server's three canned replies.
ORIGINAL_REPLIES = (
    "你好，有什么可以帮助你的吗？",
    "今天的天气是真的很不错，你应该好好的放松一下了？",
    "希望你学习golang，能够找到一份心仪的工作？",
)

DEFAULT_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3-mini",
    "gpt-4-turbo",
    "gpt-4",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "omni-moderation-latest",
    "text-moderation-latest",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-3-5-haiku-latest",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.0-flash",
)


class ConfigError(KeyPathError):
    """A config value is wrong; ``str()`` is the one line the daemon prints."""

    @classmethod
    def of(cls, problem: Problem, secret: bool = False) -> ConfigError:
        """A failed check in the config's words; ``secret``: hide the value.

        A key that is not a string is named by its path alone (the key is in
        it), as the config always has.
        """
        if problem.expected == checks.STRING_KEYS:
            return cls(problem.path, "keys must be a string")
        return cls(problem.path, checks.must(problem, secret=secret))


#: Secret keys that the suffix rule below would miss.
_SECRET_KEYS = frozenset({"access_tokens", "token"})
_SECRET_SUFFIXES = ("_token", "_key", "password")


def is_secret(key: str) -> bool:
    """Whether a key holds a secret, whose value no message may show."""
    key = key.lower()
    return key in _SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


def _opt(default: Any, **bounds: Any) -> Any:
    """A dataclass field whose ``metadata`` holds validation bounds."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata=bounds)


#: The ``http`` keys that say where the server listens: only a restart moves it.
ADDRESS_KEYS = ("host", "port", "listen", "backlog")


@dataclass(frozen=True)
class HttpConfig:
    host: str = _opt("0.0.0.0")
    port: int = _opt(8082, ge=0, le=65535)
    # The original's gin mode: "debug" turns the access log on.
    mode: str = _opt("release", choices=("debug", "release", "test"))
    # A Twisted endpoint description; wins over host/port when set.
    listen: str | None = _opt(None, nonempty=True)
    # None: follow ``mode`` (on for debug only).
    access_log: bool | None = _opt(None)
    max_body_bytes: int = _opt(8 * 1024 * 1024, ge=1024)
    # Pending connections the kernel may queue (Twisted's default of 50
    # makes a burst of clients wait on SYN retries).
    backlog: int = _opt(1024, ge=1, le=65535)
    # A whole request (headers and body) must arrive within this many seconds,
    # however slowly it trickles; past it the connection is closed.
    request_timeout_s: float = _opt(30.0, gt=0, le=3600)
    # A kept-alive connection with no request in flight is closed after this.
    idle_timeout_s: float = _opt(60.0, gt=0, le=86_400)
    # Open connections past this are closed as soon as they are accepted.
    max_connections: int = _opt(10_000, ge=1, le=1_000_000)

    @property
    def endpoint(self) -> str:
        if self.listen:
            return self.listen
        host = self.host.replace(":", "\\:")
        return f"tcp:port={self.port}:interface={host}:backlog={self.backlog}"

    @property
    def log_requests(self) -> bool:
        if self.access_log is None:
            return self.mode == "debug"
        return self.access_log


@dataclass(frozen=True)
class StreamConfig:
    chunking: str = _opt("char", choices=("char", "word", "token"))
    interval_ms: float = _opt(100.0, ge=0, le=600_000)
    # Resolution of the shared ticker that paces every open stream.
    tick_ms: float = _opt(5.0, gt=0, le=1000)
    content_filter_results: bool = _opt(False)


@dataclass(frozen=True)
class ToolsConfig:
    # With tool_choice "auto", how often the answer is a tool call (0 to 1).
    auto_probability: float = _opt(1.0, ge=0, le=1)
    # With parallel_tool_calls, at most this many calls in one answer.
    max_parallel: int = _opt(3, ge=1, le=16)


@dataclass(frozen=True)
class ResponsesConfig:
    # How many /v1/responses answers are kept (LRU) for retrieval and chaining.
    store_size: int = _opt(1000, ge=1, le=1_000_000)


@dataclass(frozen=True)
class ConversationsConfig:
    # How many /v1/conversations are kept (LRU), and items in each at most.
    store_size: int = _opt(1000, ge=1, le=1_000_000)
    max_items: int = _opt(1000, ge=1, le=100_000)


@dataclass(frozen=True)
class ChatCompletionsConfig:
    # How many ``store: true`` chat completions are kept (LRU) for listing.
    store_size: int = _opt(1000, ge=1, le=1_000_000)


#: The categories OpenAI's moderation endpoint scores, in its own spelling.
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

#: Small default word lists, enough for a demo; matched whole-word, any case.
DEFAULT_MODERATION_WORDS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "harassment": ("idiot", "loser", "moron", "pathetic"),
        "harassment/threatening": ("watch your back", "you will pay"),
        "hate": ("subhuman", "vermin"),
        "hate/threatening": ("exterminate them", "wipe them out"),
        "illicit": ("shoplift", "shoplifting", "counterfeit", "smuggle"),
        "illicit/violent": ("build a bomb", "make a bomb", "untraceable gun"),
        "self-harm": ("suicide", "self-harm", "cut myself"),
        "self-harm/intent": ("kill myself", "end my life", "want to die"),
        "self-harm/instructions": ("how to kill myself",),
        "sexual": ("porn", "pornography", "nude", "nudes"),
        "sexual/minors": ("underage",),
        "violence": ("kill", "kills", "killed", "killing", "murder", "stab", "shoot"),
        "violence/graphic": ("gore", "dismember", "decapitate", "disembowel"),
    }
)


@dataclass(frozen=True)
class ModerationConfig:
    # Per category, the words (or phrases) that flag it. Categories left out
    # keep their default list; an empty list turns a category off.
    categories: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: DEFAULT_MODERATION_WORDS,
        hash=False,
        metadata={"keys": MODERATION_CATEGORIES, "nonempty_items": True},
    )
    # Scores at or above this flag a category; matched categories score above it.
    threshold: float = _opt(0.5, gt=0, le=1)

    def __post_init__(self) -> None:
        merged = {**DEFAULT_MODERATION_WORDS, **self.categories}
        object.__setattr__(self, "categories", types.MappingProxyType(merged))


DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")


@dataclass(frozen=True)
class Latency:
    """A latency distribution in milliseconds (see engine/timing.py)."""

    dist: str = _opt("fixed", choices=DISTRIBUTIONS)
    # fixed: the value; normal: the mean.
    ms: float = _opt(0.0, ge=0, le=3_600_000)
    min_ms: float = _opt(0.0, ge=0, le=3_600_000)
    max_ms: float = _opt(0.0, ge=0, le=3_600_000)
    stddev_ms: float = _opt(0.0, ge=0, le=3_600_000)
    median_ms: float = _opt(0.0, ge=0, le=3_600_000)
    p99_ms: float = _opt(0.0, ge=0, le=3_600_000)
    # Instead of a latency: the rate (fixed gaps of 1000/tps ms).
    tokens_per_second: float | None = _opt(None, gt=0, le=1_000_000)

    def problem(self) -> tuple[str, str] | None:
        if self.dist == "uniform" and self.max_ms < self.min_ms:
            return "max_ms", f"must be >= min_ms ({self.min_ms:g})"
        if self.dist == "normal" and self.stddev_ms <= 0:
            return "stddev_ms", "must be > 0 for a normal distribution"
        if self.dist == "lognormal":
            if self.median_ms <= 0:
                return "median_ms", "must be > 0 for a lognormal distribution"
            if self.p99_ms < self.median_ms:
                return "p99_ms", f"must be >= median_ms ({self.median_ms:g})"
        return None


@dataclass(frozen=True)
class ModelTiming:
    ttft: Latency | None = _opt(None)
    itl: Latency | None = _opt(None)


@dataclass(frozen=True)
class TimingConfig:
    # false: every reply instant, streams included (for unit tests).
    enabled: bool = _opt(True)
    # Time to first token.
    ttft: Latency = _opt(Latency())
    # Inter-token latency; unset: stream.interval_ms, fixed.
    itl: Latency | None = _opt(None)
    # Non-streamed replies wait TTFT + tokens x ITL, as the real service does.
    non_stream: bool = _opt(False)
    seed: int | None = _opt(None)
    # Per model (exact name or glob such as "gpt-4o*"): ttft and/or itl.
    models: Mapping[str, ModelTiming] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    # Allow x-mock-ttft-ms / x-mock-itl-ms request headers to override.
    header_overrides: bool = _opt(False)


@dataclass(frozen=True)
class ModelRateLimit:
    requests_per_minute: int = _opt(0, ge=0)
    tokens_per_minute: int = _opt(0, ge=0)


@dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool = _opt(False)
    # 0: no limit of that kind.
    requests_per_minute: int = _opt(0, ge=0)
    tokens_per_minute: int = _opt(0, ge=0)
    # Separate budgets per model (always so for models listed below).
    per_model: bool = _opt(False)
    # The span a full budget covers: the limit per minute scaled to this
    # window is what can be spent at once (OpenAI enforces short windows).
    window_s: float = _opt(60.0, gt=0, le=3600)
    models: Mapping[str, ModelRateLimit] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )


#: What a refusal past ``capacity.max_waiting`` may answer.
CAPACITY_STATUSES = (429, 503)


@dataclass(frozen=True)
class ModelCapacity:
    # A model's own pool; unset: the global value (in a pool of its own).
    max_running: int | None = _opt(None, ge=1, le=1_000_000)
    max_waiting: int | None = _opt(None, ge=0, le=1_000_000)


@dataclass(frozen=True)
class CapacityConfig:
    """A server that fills like an inference engine (engine/capacity.py)."""

    enabled: bool = _opt(False)
    # Requests decoding at once (vLLM's max_num_seqs), then a FIFO queue.
    max_running: int = _opt(256, ge=1, le=1_000_000)
    max_waiting: int = _opt(1024, ge=0, le=1_000_000)
    # Past max_waiting: 429 (concurrency_limit_exceeded) or 503 (server_overloaded).
    refuse_status: int = _opt(429, ge=429, le=503)
    # TTFT and ITL are multiplied by 1 (nothing else running) up to this
    # (every other slot busy), linearly in the requests running.
    slowdown_at_capacity: float = _opt(1.0, ge=1, le=1000)
    # Added to TTFT for each prompt token (the prefill).
    prefill_ms_per_token: float = _opt(0.0, ge=0, le=10_000)
    # Per model (exact name or glob): a pool of its own; others share one.
    models: Mapping[str, ModelCapacity] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )

    def problem(self) -> tuple[str, str] | None:
        if self.refuse_status not in CAPACITY_STATUSES:
            return "refuse_status", f"must be 429 or 503, got {self.refuse_status}"
        return None


@dataclass(frozen=True)
class ModelFaults:
    probability: float | None = _opt(None, ge=0, le=1)
    kinds: Mapping[str, float] | None = field(
        default=None, hash=False, metadata={"keys": FAULT_KINDS, "ge": 0}
    )


@dataclass(frozen=True)
class FaultConfig:
    # Chance that a request gets a fault, then one kind drawn by weight.
    probability: float = _opt(0.0, ge=0, le=1)
    # Weights per kind; empty: every kind alike.
    kinds: Mapping[str, float] = field(
        default_factory=lambda: types.MappingProxyType({}),
        hash=False,
        metadata={"keys": FAULT_KINDS, "ge": 0},
    )
    seed: int | None = _opt(None)
    # stall: seconds of silence before the answer (0: forever).
    stall_s: float = _opt(30.0, ge=0, le=86_400)
    # cut_*, malformed: how many chunks go out intact first.
    cut_after: int = _opt(3, ge=0)
    # trickle: bytes per write, and the pause between writes.
    trickle_bytes: int = _opt(8, ge=1)
    trickle_interval_ms: float = _opt(50.0, gt=0, le=60_000)
    # Allow an x-mock-fault request header to ask for a fault by name.
    header: bool = _opt(False)
    models: Mapping[str, ModelFaults] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )


@dataclass(frozen=True)
class JournalConfig:
    # Record every /v1 (and Azure) request for GET /_mock/requests.
    enabled: bool = _opt(True)
    # How many requests the ring keeps (the oldest go first).
    size: int = _opt(1000, ge=1, le=1_000_000)
    # And how many bytes at most, so large bodies cannot exhaust a container's
    # memory (1,000 records of 1 MiB would be 1 GiB).
    max_bytes: int = _opt(32 * 1024 * 1024, ge=64 * 1024)


@dataclass(frozen=True)
class MetricsConfig:
    # GET /metrics (Prometheus text format); off: a 404 and no hook subscribed.
    enabled: bool = _opt(True)
    # A scrape must send ``Authorization: Bearer <token>``; unset: no auth.
    token: str | None = _opt(None, nonempty=True)
    # openai: mockai_* names only; vllm: vLLM's vllm:* names as well.
    naming: str = _opt("openai", choices=("openai", "vllm"))


@dataclass(frozen=True)
class StateConfig:
    # memory: each process its own (rate limits, rules' counters, journal,
    # Responses store); redis: one state for every worker and replica.
    backend: str = _opt("memory", choices=("memory", "redis"))
    # redis://[user:password@]host:port/db, rediss://... (TLS), unix:///path.
    # Never printed whole: a password in it is masked.
    url: str = _opt("redis://127.0.0.1:6379/0", nonempty=True)
    # Every key starts with it, so several mock servers share one Redis.
    prefix: str = _opt("mockai:", nonempty=True)
    # Redis lost while serving. fail: /ready 503 and API requests a 503
    # mock_state_unavailable; local: each process its own state until it is
    # back (logged once per outage).
    on_error: str = _opt("fail", choices=("fail", "local"))
    # At start the daemon waits this long for Redis, then refuses to start.
    connect_timeout_s: float = _opt(5.0, gt=0, le=300)
    # A reply Redis does not send within this is a failure (the request gets
    # the on_error answer).
    reply_timeout_s: float = _opt(2.0, gt=0, le=300)

    def problem(self) -> tuple[str, str] | None:
        try:
            parse_url(self.url)
        except ValueError as error:
            message = str(error)
            return "url", message.removeprefix("state.url ")
        if len(self.prefix) > 64:
            return "prefix", f"must be at most 64 characters, got {len(self.prefix)}"
        return None


#: The OpenAI API's own limits: a file up to 512 MB, a batch file up to 200 MB
#: and 50,000 requests.
MB = 1024 * 1024


@dataclass(frozen=True)
class FilesConfig:
    """Uploaded files (``/v1/files``, ``/v1/uploads``): per process, or
    shared with ``state.backend: redis`` (content on ``dir``)."""

    # disk: content under ``dir``; memory: content in this process's memory.
    backend: str = _opt("disk", choices=("disk", "memory"))
    # Unset: a temporary directory made at start and removed at stop.
    dir: str | None = _opt(None, nonempty=True)
    # One file at most (the API's limit), and all files together.
    max_bytes: int = _opt(512 * MB, ge=1, le=1 << 40)
    total_bytes: int = _opt(1024 * MB, ge=1, le=1 << 44)
    # How many files (and uploads) are kept at most.
    max_files: int = _opt(10_000, ge=1, le=1_000_000)


@dataclass(frozen=True)
class BatchesConfig:
    """How a batch moves through its stages, on the service's clock."""

    validating_s: float = _opt(1.0, ge=0, le=86_400)
    seconds_per_request: float = _opt(0.05, ge=0, le=3600)
    finalizing_s: float = _opt(1.0, ge=0, le=86_400)
    # A batch not finished this long after creation expires (the API: 24h).
    expire_after_s: float = _opt(86_400.0, gt=0, le=30 * 86_400)
    # The input file's bounds (the API's: 50,000 requests, 200 MB).
    max_requests: int = _opt(50_000, ge=1, le=1_000_000)
    max_input_bytes: int = _opt(200 * MB, ge=1, le=1 << 40)
    # How many batches are kept at most (the oldest finished go first).
    max_batches: int = _opt(1000, ge=1, le=1_000_000)


#: What ``recording.mode`` may be (see mockai_tw/web/proxy.py).
RECORDING_MODES = ("off", "record", "replay", "replay_or_record", "passthrough")
#: The modes that forward requests, and so need ``upstream.base_url``.
FORWARDING_MODES = ("record", "replay_or_record", "passthrough")


@dataclass(frozen=True)
class UpstreamConfig:
    """The real provider behind record and passthrough (never its key)."""

    # e.g. https://api.openai.com/v1, an Azure resource, any compatible server.
    base_url: str | None = _opt(None, nonempty=True)
    # The environment variable holding the upstream key; unset: the client's
    # own credentials go upstream as sent.
    api_key_env: str | None = _opt(None, nonempty=True)
    # Connect, first response byte, and any silence in the body: past it, 504.
    timeout_s: float = _opt(600.0, gt=0, le=3600)
    # Sent upstream with every request (after the client's headers).
    headers: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )

    def problem(self) -> tuple[str, str] | None:
        url = self.base_url
        if url is not None and not url.lower().startswith(("http://", "https://")):
            return "base_url", f"must be an http:// or https:// URL, got {url!r}"
        env = self.api_key_env
        if env is not None and not env.replace("_", "").isalnum():
            return "api_key_env", "must be an environment variable name"
        return None


@dataclass(frozen=True)
class RecordingConfig:
    """Record and replay (``mockai_tw/recording/``)."""

    mode: str = _opt("off", choices=RECORDING_MODES)
    # Where recordings live; relative to the config file's directory.
    dir: str = _opt("recordings", nonempty=True)
    # A replay miss: an error naming the key and the closest recording, or
    # the rules and the canned reply.
    on_miss: str = _opt("error", choices=("error", "default"))
    # Body fields (``a.b``, ``a[*].b``, ``a[0]``, ``*``) left out of the match key.
    ignore_fields: tuple[str, ...] = _opt((), nonempty_items=True)
    # Headers never written (authorization, api-key, x-api-key, cookies always).
    redact_headers: tuple[str, ...] = _opt((), nonempty_items=True)
    # Regexes replaced by [redacted] in bodies before they are written (and keyed).
    redact: tuple[str, ...] = _opt((), nonempty_items=True)
    # Replay with new ids and created times (consistent within one answer).
    fresh_ids: bool = _opt(False)
    # 1: as recorded; 10: ten times faster; 0: as fast as possible.
    speed: float = _opt(1.0, ge=0, le=1000)
    # A recorded answer larger than this is relayed but not saved.
    max_body_bytes: int = _opt(16 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    def problem(self) -> tuple[str, str] | None:
        import re

        from mockai_tw.recording.paths import PathError, parse_path

        for i, text in enumerate(self.ignore_fields):
            try:
                parse_path(text)
            except PathError as error:
                return f"ignore_fields[{i}]", str(error)
        for i, pattern in enumerate(self.redact):
            try:
                re.compile(pattern)
            except re.error as error:
                return f"redact[{i}]", f"invalid regex {pattern!r}: {error}"
        return None


@dataclass(frozen=True)
class ShutdownConfig:
    # After SIGTERM: /ready answers 503 at once while the listener keeps
    # accepting this long (so load balancers stop sending first) ...
    ready_grace_s: float = _opt(0.0, ge=0, le=3600)
    # ... then requests and streams in flight get this long to finish.
    drain_timeout_s: float = _opt(30.0, ge=0, le=86_400)


@dataclass(frozen=True)
class LogConfig:
    # text: twistd's own lines; json: one JSON object per line on stdout.
    format: str = _opt("text", choices=("text", "json"))


@dataclass(frozen=True)
class Config:
    http: HttpConfig = _opt(HttpConfig())
    # Reactor processes serving one port (0: one per CPU this process may
    # use; the loader reads "auto" as 0). 1: one process, no supervisor.
    workers: int = _opt(1, ge=0, le=1024)
    shutdown: ShutdownConfig = _opt(ShutdownConfig())
    log: LogConfig = _opt(LogConfig())
    access_token: str | None = _opt(None, nonempty=True)
    access_tokens: tuple[str, ...] = _opt((), nonempty_items=True)
    # Accept any non-empty bearer token (no token list needed).
    accept_any_token: bool = _opt(False)
    models: tuple[str, ...] = _opt(DEFAULT_MODELS, min_items=1, nonempty_items=True)
    # Refuse (404 model_not_found) any model not in ``models``, on every endpoint.
    strict_models: bool = _opt(False)
    replies: tuple[str, ...] = _opt(ORIGINAL_REPLIES, min_items=1, nonempty_items=True)
    system_fingerprint: str = _opt("fp_6d2f1a9c0b", nonempty=True)
    # Seed for the reply picker; None draws from the OS.
    seed: int | None = _opt(None)
    stream: StreamConfig = _opt(StreamConfig())
    moderation: ModerationConfig = _opt(ModerationConfig())
    tools: ToolsConfig = _opt(ToolsConfig())
    responses: ResponsesConfig = _opt(ResponsesConfig())
    conversations: ConversationsConfig = _opt(ConversationsConfig())
    chat_completions: ChatCompletionsConfig = _opt(ChatCompletionsConfig())
    timing: TimingConfig = _opt(TimingConfig())
    rate_limits: RateLimitConfig = _opt(RateLimitConfig())
    faults: FaultConfig = _opt(FaultConfig())
    capacity: CapacityConfig = _opt(CapacityConfig())
    # The bearer token of the /_mock/ control API; unset: no control API.
    admin_token: str | None = _opt(None, nonempty=True)
    journal: JournalConfig = _opt(JournalConfig())
    metrics: MetricsConfig = _opt(MetricsConfig())
    # Shared state across workers and replicas (Redis), or per process.
    state: StateConfig = _opt(StateConfig())
    files: FilesConfig = _opt(FilesConfig())
    batches: BatchesConfig = _opt(BatchesConfig())
    # The real provider, and record / replay against it.
    upstream: UpstreamConfig = _opt(UpstreamConfig())
    recording: RecordingConfig = _opt(RecordingConfig())
    # Scenario rules, first match wins: the loader has engine.rules parse them.
    rules: tuple[Rule, ...] = _opt(())
    # Loaded from ``recording.dir`` by the loader (mockai_tw/recording/files.py).
    recordings: tuple[Recording, ...] = field(default=(), compare=False)

    @property
    def tokens(self) -> tuple[str, ...]:
        first = (self.access_token,) if self.access_token else ()
        return first + tuple(t for t in self.access_tokens if t != self.access_token)

    def listening_as(self, running: HttpConfig) -> Config:
        """This config with ``running``'s listening address (``ADDRESS_KEYS``):
        a reload keeps where the server listens, only a restart moves it."""
        kept = {key: getattr(running, key) for key in ADDRESS_KEYS}
        return dataclasses.replace(self, http=dataclasses.replace(self.http, **kept))

    def problem(self) -> tuple[str, str] | None:
        if not self.tokens and not self.accept_any_token:
            return (
                "access_token",
                "required: set access_token (or access_tokens,"
                " or accept_any_token: true)",
            )
        if self.state.backend == "redis" and self.files.backend == "memory":
            # Other processes could list such a file but never read it.
            return (
                "files.backend",
                "memory cannot be shared between processes: with state.backend"
                " redis use disk, files.dir a directory every process reads",
            )
        mode = self.recording.mode
        if mode in FORWARDING_MODES and not self.upstream.base_url:
            return "upstream.base_url", f"required when recording.mode is {mode}"
        return None


# --- conversion -----------------------------------------------------------

# Names the annotations use for type checkers only (``rules`` is filled by the
# rule parser, never converted here).
_CHECKER_ONLY_NAMES = {"Rule": Any, "Recording": Any}


def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, localns=_CHECKER_ONLY_NAMES)


def _convert(
    value: Any, tp: Any, path: str, bounds: Mapping[str, Any], secret: bool
) -> Any:
    """``value`` as type ``tp``; ``secret``: no message may show the value.

    The shared checks raise a Problem; it is worded here, where it is known
    whether the value is a secret (a nested value has been worded already).
    """
    try:
        return _as_type(value, tp, path, bounds, secret)
    except Problem as problem:
        raise ConfigError.of(problem, secret) from None


def _as_type(
    value: Any, tp: Any, path: str, bounds: Mapping[str, Any], secret: bool
) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _as_type(value, args[0], path, bounds, secret)
    if dataclasses.is_dataclass(tp):
        raw = checks.mapping(value, path)
        return _build(tp, raw, path, secret)  # type: ignore[arg-type]
    if origin in (dict, Mapping):
        return _mapping(value, typing.get_args(tp)[1], path, bounds, secret)
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            value = [value]
        checks.array(value, path, min_items=bounds.get("min_items", 0))
        items = tuple(
            _convert(v, item_tp, f"{path}[{i}]", {}, secret)
            for i, v in enumerate(value)
        )
        if bounds.get("nonempty_items"):
            for i, item in enumerate(items):
                checks.string(item, f"{path}[{i}]", nonempty=True)
        return items
    ge, gt, le = (bounds.get(key) for key in ("ge", "gt", "le"))
    if tp is bool:
        return checks.boolean(value, path)
    if tp is int:
        return checks.integer(value, path, ge=ge, gt=gt, le=le)
    if tp is float:
        return checks.number(value, path, ge=ge, gt=gt, le=le)
    if tp is str:
        text = checks.string(
            value, path, nonempty=bounds.get("nonempty", False), strip=True
        )
        if "choices" in bounds:
            checks.one_of(text, path, bounds["choices"])
        return text
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover


def _mapping(
    value: Any, value_tp: Any, path: str, bounds: Mapping[str, Any], secret: bool
) -> Mapping[str, Any]:
    """A ``Mapping[str, value_tp]`` field; ``bounds["keys"]``: the keys allowed."""
    known = bounds.get("keys")
    item_bounds = {k: v for k, v in bounds.items() if k != "keys"}
    out = {}
    for key, item in checks.mapping(value, path).items():
        where = f"{path}.{key}"
        if known is not None:
            checks.known_key(key, where, known)
        checks.string_key(key, where)
        hidden = secret or is_secret(key)
        out[key] = _convert(item, value_tp, where, item_bounds, hidden)
    return types.MappingProxyType(out)


def _build(
    cls: type[Any], raw: Mapping[str, Any], prefix: str, secret: bool = False
) -> Any:
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        path = checks.key_path(prefix, key)
        checks.known_key(key, path, sorted(fields))
        hidden = secret or is_secret(key)
        kwargs[key] = _convert(value, hints[key], path, fields[key].metadata, hidden)
    built = cls(**kwargs)
    # Cross-field checks: ``problem()`` names the key and what is wrong.
    problem = getattr(built, "problem", None)
    found = problem() if callable(problem) else None
    if found is not None:
        key, message = found
        raise ConfigError(checks.key_path(prefix, key), message)
    return built


def build_config(raw: Mapping[str, Any]) -> Config:
    """A validated ``Config`` from plain data (a parsed YAML mapping).

    Everything but ``rules``, which the rule parser owns: the loader passes
    them there and sets ``Config.rules`` from what it returns.
    """
    if "rules" in raw:
        raise TypeError("build_config takes no rules; the loader parses them")
    try:
        config: Config = _build(Config, raw, "")
    except Problem as problem:  # a key of the top level
        raise ConfigError.of(problem) from None
    return config


def setting_type(path: list[str]) -> Any:
    """The type of the setting at ``path`` (``["http", "port"]``), or None."""
    cls: Any = Config
    tp: Any = Config
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            return None
        hints = _hints(cls)
        if part not in hints:
            return None
        tp = hints[part]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        cls = args[0] if typing.get_origin(tp) in (Union, types.UnionType) else tp
        if typing.get_origin(tp) in (dict, Mapping):
            # The part after a mapping is one of its keys, of the value type.
            rest = path[i + 1 :]
            return typing.get_args(tp)[1] if len(rest) == 1 else None if rest else tp
    return tp
