"""The timing model: time to first token and inter-token latency, as distributions.

Pure: a distribution is sampled with a ``random.Random`` the caller owns, so
a seeded run replays exactly.  Log-normal is given the way latency is usually
reported (median and p99), not by its parameters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# The standard normal's 99th percentile: p99 = median * exp(Z99 * sigma).
Z99 = 2.3263478740408408


@dataclass(frozen=True)
class Distribution:
    """A latency distribution in milliseconds."""

    dist: str = "fixed"
    ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    stddev_ms: float = 0.0
    median_ms: float = 0.0
    p99_ms: float = 0.0

    def sample_ms(self, rng: random.Random) -> float:
        if self.dist == "fixed":
            return self.ms
        if self.dist == "uniform":
            return rng.uniform(self.min_ms, self.max_ms)
        if self.dist == "normal":
            return max(0.0, rng.gauss(self.ms, self.stddev_ms))
        if self.dist == "lognormal":
            sigma = math.log(self.p99_ms / self.median_ms) / Z99
            return rng.lognormvariate(math.log(self.median_ms), sigma)
        raise ValueError(f"unknown distribution {self.dist!r}")

    def sample(self, rng: random.Random) -> float:
        """One sample, in seconds."""
        return self.sample_ms(rng) / 1000.0

    def problem(self) -> tuple[str, str] | None:
        """(key, message) when the parameters cannot describe a distribution."""
        if self.dist == "uniform" and self.max_ms < self.min_ms:
            return "max_ms", f"must be >= min_ms ({self.min_ms:g})"
        if self.dist == "lognormal":
            if self.median_ms <= 0:
                return "median_ms", "must be > 0 for a lognormal distribution"
            if self.p99_ms < self.median_ms:
                return "p99_ms", f"must be >= median_ms ({self.median_ms:g})"
        return None


def fixed(ms: float) -> Distribution:
    return Distribution("fixed", ms=ms)


def gaps(itl: Distribution, count: int, rng: random.Random) -> tuple[float, ...]:
    """``count`` inter-token gaps in seconds (fixed ones cost no sampling)."""
    if itl.dist == "fixed":
        return (itl.ms / 1000.0,) * count
    return tuple(itl.sample(rng) for _ in range(count))
