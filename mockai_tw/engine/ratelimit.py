"""Rate limits as OpenAI applies them: requests and tokens per minute, per key.

Pure: budgets refill continuously and every decision takes ``now``.  A
request is admitted only when both budgets cover it (one request, and its
prompt tokens plus ``max_tokens`` reserved up front); its answer carries the
``x-ratelimit-*`` headers either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mockai_tw.config import RateLimitConfig
from mockai_tw.errors import ApiError

_LEARN_MORE = "Visit https://platform.openai.com/account/rate-limits to learn more."


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


@dataclass(frozen=True)
class Decision:
    headers: dict[str, str]
    error: ApiError | None = None


class RateLimiter:
    """Budgets per API key (and per model when configured), created on first use."""

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._buckets: dict[tuple[str, str, str], Bucket] = {}

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
            return Decision({})
        requests = self._bucket(key, model, "requests", now)
        budget = self._bucket(key, model, "tokens", now)
        error = None
        if requests is not None:
            wait = requests.wait(1)
            if wait > 0:
                error = self._refusal(
                    "requests", "requests per min (RPM)", requests, 1, wait, model
                )
        amount = 0
        if error is None and budget is not None:
            amount = tokens() if callable(tokens) else tokens
            wait = budget.wait(amount)
            if wait > 0:
                error = self._refusal(
                    "tokens", "tokens per min (TPM)", budget, amount, wait, model
                )
        if error is None:
            if requests is not None:
                requests.available -= 1
            if budget is not None:
                budget.available -= amount
        headers: dict[str, str] = {}
        for kind, bucket in (("requests", requests), ("tokens", budget)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(
                    max(0, math.floor(bucket.available))
                )
                headers[f"x-ratelimit-reset-{kind}"] = duration(bucket.reset())
        if error is not None:
            error = ApiError(
                error.status,
                error.message,
                error.type,
                error.param,
                error.code,
                {**headers, **error.headers},
            )
        return Decision(headers, error)

    def _refusal(
        self, kind: str, unit: str, bucket: Bucket, amount: int, wait: float, model: str
    ) -> ApiError:
        used = math.ceil(bucket.capacity - bucket.available)
        if math.isinf(wait):
            message = (
                f"Request too large for {model} on {unit}: Limit {bucket.limit},"
                f" Requested {amount}. The input or output tokens must be reduced"
                f" in order to run successfully. {_LEARN_MORE}"
            )
            return ApiError(429, message, type=kind, code="rate_limit_exceeded")
        message = (
            f"Rate limit reached for {model} in organization org-mockai on {unit}:"
            f" Limit {bucket.limit}, Used {used}, Requested {amount}. Please try"
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
