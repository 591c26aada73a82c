"""The garbage collector tuned for a server that holds thousands of streams.

CPython's collector walks every object it tracks in a full collection. Under
a burst of 1,000 open streams that was 65 ms per full collection (and 1 ms
per middle one), a pause every stream in the process shares: about a
quarter of the CPU a stream start cost, measured in one process
(benchmarks/README.md). Two standard remedies, applied while the daemon runs:

- everything alive once the daemon has started (modules, config, tables) is
  frozen out of the collector's lists (``gc.freeze``): it is never garbage;
- young objects are collected after 7,000 net allocations, not 700, and
  the middle generation after 200 of those, not 10: a request, a stream
  and a connection free what they allocate by reference counting (no cycle:
  tests/test_stream_start.py NoCycleTests), so the collector finds almost
  nothing.  A middle collection walks every open stream's young objects
  (18-23 ms under a churn of 1,000 streams, every 2.5 s at 50); at 200 it
  comes every ~10 s.

Reference cycles are still collected, later.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

THRESHOLDS = (7000, 200, 10)


class TunedCollector(Service):
    """Freezes what start-up made and raises the thresholds; ``stopService``
    puts the collector back as it was."""

    name = "collector"

    def __init__(self, thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
        self.thresholds = thresholds
        self.before: tuple[int, int, int] | None = None

    def startService(self) -> None:
        super().startService()
        self.before = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.thresholds)

    def stopService(self) -> None:
        super().stopService()
        if self.before is not None:
            gc.set_threshold(*self.before)
            self.before = None
        gc.unfreeze()
