"""The timing model: time to first token and inter-token latency, as distributions.

Pure: sampling uses a ``random.Random`` the model owns (seeded from
``timing.seed``), so a seeded run replays exactly.  Log-normal is given the
way latency is reported (median and p99), not by its parameters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mockai_tw.config import Config, Latency
from mockai_tw.engine.plan import Pacing
from mockai_tw.globs import for_model

# The standard normal's 99th percentile: p99 = median * exp(Z99 * sigma).
Z99 = 2.3263478740408408
INSTANT = Latency()
# The pacing of every reply while timing is off.
NO_PACING = Pacing()


def sample_ms(latency: Latency, rng: random.Random) -> float:
    """One draw from ``latency``, in milliseconds."""
    if latency.tokens_per_second is not None:
        return 1000.0 / latency.tokens_per_second
    if latency.dist == "fixed":
        return latency.ms
    if latency.dist == "uniform":
        return rng.uniform(latency.min_ms, latency.max_ms)
    if latency.dist == "normal":
        return max(0.0, rng.gauss(latency.ms, latency.stddev_ms))
    if latency.dist == "lognormal":
        sigma = math.log(latency.p99_ms / latency.median_ms) / Z99
        return rng.lognormvariate(math.log(latency.median_ms), sigma)
    raise ValueError(f"unknown distribution {latency.dist!r}")


def is_fixed(latency: Latency) -> bool:
    return latency.tokens_per_second is not None or latency.dist == "fixed"


@dataclass(frozen=True)
class Override:
    """Per-request timing asked for by headers (when the config allows it)."""

    ttft_ms: float | None = None
    itl_ms: float | None = None


class TimingModel:
    """Pacing for each reply, per model, from the config's distributions."""

    def __init__(self, config: Config) -> None:
        self.timing = config.timing
        self.default_itl = Latency(ms=config.stream.interval_ms)
        self.rng = random.Random(self.timing.seed)
        self._per_model: dict[str, tuple[Latency, Latency]] = {}
        # Fixed pacings repeat on every request: one shared value each.
        self._pacings: dict[tuple[float, float], Pacing] = {}

    def latencies(self, model: str) -> tuple[Latency, Latency]:
        """(ttft, itl) for ``model``: exact entry, else first glob, else defaults."""
        found = self._per_model.get(model)
        if found is not None:
            return found
        timing = self.timing
        ttft, itl = timing.ttft, timing.itl or self.default_itl
        entry = for_model(timing.models, model)
        if entry is not None:
            ttft = entry.ttft or ttft
            itl = entry.itl or itl
        if len(self._per_model) < 1024:
            self._per_model[model] = (ttft, itl)
        return ttft, itl

    def _fixed(self, first: float, interval: float) -> Pacing:
        key = (first, interval)
        pacing = self._pacings.get(key)
        if pacing is None:
            pacing = Pacing(first, interval)
            if len(self._pacings) < 1024:
                self._pacings[key] = pacing
        return pacing

    def _asked(self, model: str, override: Override | None) -> tuple[Latency, Latency]:
        """(ttft, itl) for ``model`` under what the request's headers asked."""
        ttft, itl = self.latencies(model)
        if override is not None and override.ttft_ms is not None:
            ttft = Latency(ms=override.ttft_ms)
        if override is not None and override.itl_ms is not None:
            itl = Latency(ms=override.itl_ms)
        return ttft, itl

    def steady(self, model: str, override: Override | None = None) -> Pacing | None:
        """The pacing of every reply of ``model`` when it takes no draw (timing
        off, or both latencies fixed), else None: a caller may keep it, as
        ``pacing`` would give it again and move no random state."""
        if not self.timing.enabled:
            return NO_PACING
        ttft, itl = self._asked(model, override)
        if not (is_fixed(ttft) and is_fixed(itl)):
            return None
        return self._fixed(
            sample_ms(ttft, self.rng) / 1000.0, sample_ms(itl, self.rng) / 1000.0
        )

    def pacing(
        self, model: str, steps: int, override: Override | None = None
    ) -> Pacing:
        """When each of ``steps`` pieces is due; ``Pacing()`` when timing is off."""
        if not self.timing.enabled:
            return Pacing()
        ttft, itl = self._asked(model, override)
        first = sample_ms(ttft, self.rng) / 1000.0
        if is_fixed(itl):
            return self._fixed(first, sample_ms(itl, self.rng) / 1000.0)
        gaps = [sample_ms(itl, self.rng) / 1000.0 for _ in range(max(steps - 1, 0))]
        return Pacing.from_gaps(first, gaps)

    def non_stream_delay(self, pacing: Pacing, steps: int) -> float:
        """How long a non-streamed reply waits: until its last piece is due."""
        if not (self.timing.enabled and self.timing.non_stream):
            return 0.0
        return pacing.due(max(steps - 1, 0))
