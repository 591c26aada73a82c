"""Rate limits as OpenAI applies them: requests and tokens per minute, per key.

Pure: budgets refill continuously and every decision takes ``now``.  A
request is admitted only when both budgets cover it (one request, and its
prompt tokens plus ``max_tokens`` reserved up front); its answer carries the
``x-ratelimit-*`` headers either way.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from mockai_tw.config import RateLimitConfig
from mockai_tw.errors import ApiError

_LEARN_MORE = "Visit https://platform.openai.com/account/rate-limits to learn more."


#: Digests of API keys kept at most (keys are bounded by the config; a guard).
MAX_DIGESTS = 10_000


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


class Bucket:
    """A budget of ``limit`` per minute, refilled continuously."""

    def __init__(self, limit: int, now: float, window_s: float = 60.0) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = max(1.0, limit * window_s / 60.0)
        self.available = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.available = min(
                self.capacity, self.available + (now - self.updated) * self.rate
            )
            self.updated = now

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 when it is now)."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.available) / self.rate)

    def reset(self) -> float:
        """Seconds until the budget is full again."""
        return (self.capacity - self.available) / self.rate

    def state(self, wait: float) -> State:
        return State(self.limit, self.capacity, self.available, wait, self.reset())


#: One budget as a decision shows it: kind, limit, available, seconds to full.
Shown = tuple[str, int, float, float]


@dataclass(frozen=True)
class Decision:
    headers: dict[str, str]
    error: ApiError | None = None
    # The budgets behind ``headers``, for a provider that names them its way.
    budgets: tuple[Shown, ...] = ()


# What every request gets while rate limits are off: one shared value (its
# empty headers are only read), not a new one per request.
_UNLIMITED = Decision({})


class RateLimiter:
    """Budgets per API key (and per model when configured), created on first use."""

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        self._digests: dict[str, str] = {}

    def _bucket(self, key: str, model: str, kind: str, now: float) -> Bucket | None:
        entry = self.config.models.get(model)
        limit = getattr(entry or self.config, f"{kind}_per_minute")
        if not limit:
            return None
        scope = model if (self.config.per_model or entry is not None) else ""
        bucket = self._buckets.get((key, scope, kind))
        if bucket is None or bucket.limit != limit:
            bucket = Bucket(limit, now, self.config.window_s)
            self._buckets[(key, scope, kind)] = bucket
        bucket.refill(now)
        return bucket

    def admit(
        self, key: str, model: str, tokens: int | Callable[[], int], now: float
    ) -> Decision:
        """Charge one request of ``tokens`` to ``key``, or refuse it with a 429.

        ``tokens`` may be a thunk: it is called only when a token budget
        applies and the request budget admitted the request, so a reply
        generated to count its tokens is never generated for nothing.
        """
        if not self.config.enabled:
            return _UNLIMITED
        requests = self._bucket(key, model, "requests", now)
        budget = self._bucket(key, model, "tokens", now)
        refused: Refused | None = None
        if requests is not None:
            wait = requests.wait(1)
            if wait > 0:
                refused = Refused("requests", requests.state(wait), 1)
        amount = 0
        if refused is None and budget is not None:
            amount = tokens() if callable(tokens) else tokens
            wait = budget.wait(amount)
            if wait > 0:
                refused = Refused("tokens", budget.state(wait), amount)
        if refused is None:
            if requests is not None:
                requests.available -= 1
            if budget is not None:
                budget.available -= amount
        shown = [
            (kind, bucket.limit, bucket.available, bucket.reset())
            for kind, bucket in (("requests", requests), ("tokens", budget))
            if bucket is not None
        ]
        return decision(shown, refused, model)

    # --- shared budgets (state.backend: redis) --------------------------------

    def _digest(self, key: str) -> str:
        """The API key is a secret: a shared store sees a digest of it
        (worked out once per key, not per request)."""
        digest = self._digests.get(key)
        if digest is None:
            if len(self._digests) >= MAX_DIGESTS:
                self._digests.clear()
            digest = hashlib.sha256(key.encode()).hexdigest()[:24]
            self._digests[key] = digest
        return digest

    def charges(self, key: str, model: str) -> list[Budget]:
        """The budgets a request of ``key`` for ``model`` charges, for a store
        that keeps them (the amount of ``tokens`` is the caller's to add)."""
        if not self.config.enabled:
            return []
        out = []
        for kind in ("requests", "tokens"):
            entry = self.config.models.get(model)
            limit = getattr(entry or self.config, f"{kind}_per_minute")
            if not limit:
                continue
            scope = model if (self.config.per_model or entry is not None) else ""
            digest = self._digest(key)
            capacity = max(1.0, limit * self.config.window_s / 60.0)
            out.append(Budget(kind, f"{kind}:{scope}:{digest}", limit, capacity))
        return out


@dataclass(frozen=True)
class Budget:
    """A budget as a shared store keeps it (its ``key`` names no secret)."""

    kind: str
    key: str
    limit: int
    capacity: float


@dataclass(frozen=True)
class State:
    """A budget after a decision: left now, seconds until the amount asked is
    there (``inf``: never, it is above the capacity), seconds until full."""

    limit: int
    capacity: float
    available: float
    wait: float
    reset: float


@dataclass(frozen=True)
class Refused:
    kind: str
    state: State
    amount: int


def decision(
    shown: list[tuple[str, int, float, float]], refused: Refused | None, model: str
) -> Decision:
    """The headers (``kind, limit, available, reset`` per budget) and, when
    ``refused``, OpenAI's 429 for the budget that ran out."""
    headers: dict[str, str] = {}
    for kind, limit, available, reset in shown:
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(available)))
        headers[f"x-ratelimit-reset-{kind}"] = duration(reset)
    budgets = tuple(shown)
    if refused is None:
        return Decision(headers, budgets=budgets)
    error = _refusal(refused, model)
    return Decision(
        headers,
        ApiError(
            error.status,
            error.message,
            error.type,
            error.param,
            error.code,
            {**headers, **error.headers},
        ),
        budgets,
    )


def _refusal(refused: Refused, model: str) -> ApiError:
    kind, state, amount = refused.kind, refused.state, refused.amount
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    wait = state.wait
    used = math.ceil(state.capacity - state.available)
    if math.isinf(wait):
        message = (
            f"Request too large for {model} on {unit}: Limit {state.limit},"
            f" Requested {amount}. The input or output tokens must be reduced"
            f" in order to run successfully. {_LEARN_MORE}"
        )
        return ApiError(429, message, type=kind, code="rate_limit_exceeded")
    message = (
        f"Rate limit reached for {model} in organization org-mockai on {unit}:"
        f" Limit {state.limit}, Used {used}, Requested {amount}. Please try"
        f" again in {duration(wait)}. {_LEARN_MORE}"
    )
    return ApiError(
        429,
        message,
        type=kind,
        code="rate_limit_exceeded",
        headers={
            "retry-after": str(max(1, math.ceil(wait))),
            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
        },
    )


def shared_decision(
    budgets: list[Budget],
    amounts: list[int],
    states: list[tuple[float, float, float]],
    model: str,
) -> Decision:
    """The decision a shared store made: ``states`` holds each budget's
    ``(available, wait, reset)``; a wait above 0 refused the request."""
    refused = None
    for budget, amount, (available, wait, reset) in zip(
        budgets, amounts, states, strict=True
    ):
        if wait > 0 and refused is None:
            state = State(budget.limit, budget.capacity, available, wait, reset)
            refused = Refused(budget.kind, state, amount)
    shown = [
        (b.kind, b.limit, available, reset)
        for b, (available, _wait, reset) in zip(budgets, states, strict=True)
    ]
    return decision(shown, refused, model)
