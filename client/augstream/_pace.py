"""How fast each replica of a stream delivers: what sizes its ranges and tells an overdue
batch from a slow one (``_schedule``)."""

from __future__ import annotations

import statistics
from collections import deque

__all__ = ["MIN_PATIENCE_S", "PATIENCE_FACTOR", "Paces"]

#: An overdue batch is one that takes this many times the stream's usual time per batch
#: (and at least ``MIN_PATIENCE_S``).
PATIENCE_FACTOR = 4.0
MIN_PATIENCE_S = 0.5


class Paces:
    """Each worker's seconds per batch (a moving average), from the times it delivers;
    the caller holds the lock."""

    def __init__(self) -> None:
        self._pace: dict[int, float] = {}
        self._last: dict[int, float] = {}
        #: The grant each worker delivered its last batch of.
        self._grant: dict[int, int] = {}
        #: Recent times a grant waited for its next batch, across workers.
        self._waits: deque[float] = deque(maxlen=64)

    def delivered(self, worker: int, arrived: float, grant: int = 0) -> None:
        """The worker delivered a batch of ``grant`` at ``arrived``. Only batches of one
        grant in a row count: the gap before a grant's first batch is its request and the
        consumer's pace (a full window), not the replica's."""
        last = self._last.get(worker)
        self._last[worker] = arrived
        if self._grant.get(worker) != grant:
            last = None
        self._grant[worker] = grant
        if last is not None:
            interval = arrived - last
            pace = self._pace.get(worker)
            self._pace[worker] = interval if pace is None else 0.8 * pace + 0.2 * interval

    def waited(self, seconds: float) -> None:
        """A grant waited ``seconds`` for a batch that arrived."""
        self._waits.append(seconds)

    def forget(self, worker: int) -> None:
        self._pace.pop(worker, None)
        self._last.pop(worker, None)
        self._grant.pop(worker, None)

    def share(self, worker: int, workers: set[int]) -> float:
        """The worker's speed against the fastest of ``workers`` (1: as fast; unknown: 1)."""
        pace = self._pace.get(worker)
        known = [p for w, p in self._pace.items() if w in workers and p > 0]
        if pace is None or pace <= 0 or not known:
            return 1.0
        return min(1.0, min(known) / pace)

    def patience(self) -> float:
        """How long a batch may take before it counts as overdue."""
        usual = statistics.median(self._waits) if self._waits else 0.0
        return max(MIN_PATIENCE_S, PATIENCE_FACTOR * usual)
