"""Which replica makes which batch of a stream, and the batches put back in order.

A stream is a sequence of positions ``0, 1, 2, ...`` (epoch * batches per epoch + batch).
Replicas are handed *grants*, ranges ``[next, stop)`` of positions, by whichever asks
first: a fast replica comes back for more sooner, so it makes more. A replica may hold two
grants, reading one while its server already makes the next. The consumer takes the
positions in order from a reorder buffer that never holds more than ``window`` positions
ahead of it, whatever the number of replicas: a grant is only made inside the window, and
a lone replica's open-ended grant waits at its edge.

A replica that asks when nothing is left to hand out *steals*: it takes the later half of
the unstarted positions of the busiest grant. A replica that fails hands its unfinished
positions back (first in line for the next taker); one whose current batch is overdue has
it made again by an idle replica (a duplicate: the first copy to arrive is kept, and the
bytes are the same, since a batch is a pure function of its position). So every position
arrives exactly once, in order, and a slow replica never sets the pace.

Pure bookkeeping under one lock; the threads that read connections and the consumer call
in. No I/O here.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._pace import Paces

__all__ = ["Grant", "Schedule"]

#: A grant's positions at most (a lone replica's is open-ended instead).
MAX_GRANT = 64
#: Grants one worker holds at once: the one it reads, and the next, being made meanwhile.
GRANTS_PER_WORKER = 2

_ids = itertools.count(1)


@dataclass
class Grant:
    """Positions ``[next, stop)`` handed to one worker (``stop`` None: open-ended)."""

    worker: int
    next: int
    stop: int | None
    #: A second copy of another grant's overdue position.
    duplicate: bool = False
    #: When the position ``next`` began to be waited for (for overdue batches).
    since: float = field(default_factory=time.monotonic)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def done(self) -> bool:
        return self.stop is not None and self.next >= self.stop

    @property
    def count(self) -> int | None:
        """Positions left (None: open-ended)."""
        return None if self.stop is None else self.stop - self.next


class Schedule:
    """The grants and the reorder buffer of one stream."""

    def __init__(
        self,
        start: int,
        end: int | None,
        window: int,
        *,
        grant_size: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cond = threading.Condition()
        self._clock = clock
        #: The consumer's next position, and the first one after the stream (None: endless).
        self.head = start
        self.end = end
        self.window = max(1, window)
        self.grant_size = max(1, min(MAX_GRANT, grant_size))
        #: The first position no grant covers (None: an open-ended grant covers the rest).
        self._tail: int | None = start
        #: Ranges handed back by failed or retired workers, sorted; taken before the tail.
        self._returned: list[tuple[int, int]] = []
        self._ready: dict[int, Any] = {}
        self._grants: dict[int, Grant] = {}
        self._workers: set[int] = set()
        self._paces = Paces()
        self._closed = False
        self._failure: BaseException | None = None
        #: Positions made by each worker (kept), and duplicates or leftovers not kept.
        self.made: dict[int, int] = {}
        self.wasted = 0

    # -- workers -----------------------------------------------------------------------

    def join(self, worker: int) -> None:
        """A worker (a replica's reading thread) starts asking for grants."""
        with self._cond:
            self._workers.add(worker)
            self.made.setdefault(worker, 0)
            self._cond.notify_all()

    def leave(self, worker: int) -> None:
        """A worker stops; its unfinished positions go to the others."""
        with self._cond:
            self._workers.discard(worker)
            self._paces.forget(worker)
            for grant in [g for g in self._grants.values() if g.worker == worker]:
                del self._grants[grant.id]
                self._give_back(grant)
            self._cond.notify_all()

    @property
    def workers(self) -> int:
        """Workers taking part now."""
        with self._cond:
            return len(self._workers)

    def opening(self, worker: int, count: int | None) -> Grant:
        """The first grant of the stream, for the connection opened before the schedule
        existed: ``count`` positions from the start (None: open-ended)."""
        with self._cond:
            if self._tail != self.head or self._grants:
                raise RuntimeError("the opening grant must be the first")
            stop = self.end if count is None else self.head + count
            if self.end is not None and stop is not None:
                stop = min(stop, self.end)
            grant = Grant(worker, self.head, stop, since=self._clock())
            self._tail = stop
            self._grants[grant.id] = grant
            return grant

    def take(self, worker: int, wait: float | None = None, second: bool = False) -> Grant | None:
        """The worker's next grant; blocks until there is one (None: the stream is over or
        closed, or ``wait`` seconds passed). ``second``: a grant to hold beside the one the
        worker reads, taken only from what nobody holds (never stolen, never a duplicate)."""
        deadline = None if wait is None else self._clock() + wait
        with self._cond:
            while True:
                if self._closed or self._finished():
                    return None
                grant = self._next_grant(worker, second)
                if grant is not None:
                    self._grants[grant.id] = grant
                    return grant
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return None
                # Woken by any change; a timeout re-checks for overdue batches.
                self._cond.wait(timeout=min(0.1, left) if left is not None else 0.1)

    def deliver(self, grant: Grant, position: int, item: Any) -> bool:
        """Put the batch at ``position`` (received under ``grant``) in the buffer, waiting
        while it lies beyond the window. False: the grant is over (done, stolen, or the
        stream closed): stop reading it."""
        with self._cond:
            self._paces.delivered(grant.worker, self._clock(), grant.id)
            while True:
                if self._closed or self._grants.get(grant.id) is not grant:
                    return False
                if grant.stop is not None and position >= grant.stop:
                    del self._grants[grant.id]  # the rest was stolen
                    return False
                if position < self.head + self.window:
                    break
                if self._head_unowned():
                    # The head went back to the pool and no other worker is free: this
                    # one takes it rather than wait for a consumer that waits for it.
                    self._drop(grant, position)
                    return False
                self._cond.wait(timeout=0.1)
            now = self._clock()
            if position >= self.head and position not in self._ready:
                self._ready[position] = item
                self.made[grant.worker] = self.made.get(grant.worker, 0) + 1
                self._paces.waited(now - grant.since)
            else:
                self.wasted += 1
            grant.next, grant.since = position + 1, now
            more = not grant.done and not grant.duplicate
            if not more:
                del self._grants[grant.id]
            self._cond.notify_all()
            return more

    def fail(self, grant: Grant) -> None:
        """The grant's connection broke (or ended early): its unfinished positions go back
        to the pool."""
        with self._cond:
            if self._grants.get(grant.id) is grant:
                del self._grants[grant.id]
                self._give_back(grant)
            self._cond.notify_all()

    # -- the consumer ------------------------------------------------------------------

    def take_batch(self, timeout: float | None = None) -> Any:
        """The item at the head, in order; raises ``StopIteration`` at the end of a finite
        stream (or once closed), the stream's failure if it failed, ``TimeoutError`` after
        ``timeout``."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self.head not in self._ready:
                if self._failure is not None:
                    raise self._failure
                if self._finished() or self._closed:
                    raise StopIteration
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no batch within {timeout} s")
                self._cond.wait(timeout=left)
            item = self._ready.pop(self.head)
            self.head += 1
            self._cond.notify_all()
            return item

    def fatal(self, error: BaseException) -> None:
        """The stream cannot go on: the consumer raises ``error`` once the batches before it
        are taken."""
        with self._cond:
            if self._failure is None:
                self._failure = error
            self._cond.notify_all()

    def close(self) -> None:
        """Stop: workers' ``take`` and ``deliver`` return at once."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()

    def grow_window(self, window: int, grant_size: int) -> None:
        """Let the buffer hold up to ``window`` positions and grants be of ``grant_size``
        (neither ever shrinks)."""
        with self._cond:
            self.window = max(self.window, window)
            self.grant_size = max(self.grant_size, min(MAX_GRANT, grant_size))
            self._cond.notify_all()

    @property
    def over(self) -> bool:
        """Whether every position of a finite stream has been taken, or it was closed."""
        with self._cond:
            return self._closed or self._finished()

    def arrived(self, position: int) -> bool:
        """Whether the batch at ``position`` has arrived (waiting in the buffer, or taken)."""
        with self._cond:
            return position < self.head or position in self._ready

    @property
    def buffered(self) -> int:
        """Batches received and not yet taken."""
        with self._cond:
            return len(self._ready)

    # -- inside the lock -----------------------------------------------------------------

    def _finished(self) -> bool:
        return self.end is not None and self.head >= self.end

    def _limit(self) -> int:
        """The first position no grant may reach into."""
        limit = self.head + self.window
        return limit if self.end is None else min(limit, self.end)

    def _lone(self, worker: int) -> bool:
        return self._workers <= {worker} and all(g.worker == worker for g in self._grants.values())

    def _next_grant(self, worker: int, second: bool) -> Grant | None:
        limit = self._limit()
        # A slow replica gets smaller ranges (and no second one), so the consumer never
        # waits long behind it.
        share = self._paces.share(worker, self._workers)
        if second and share < 0.5:
            return None
        size = max(1, round(self.grant_size * share))
        # 1. What failed or retired workers handed back, lowest first.
        while self._returned:
            start, stop = self._returned[0]
            if start < self.head:  # arrived meanwhile (a duplicate won)
                self._returned.pop(0)
                if stop > self.head:
                    bisect.insort(self._returned, (self.head, stop))
                continue
            if start >= limit:
                break
            cut = min(stop, start + size, limit)
            self._returned.pop(0)
            if cut < stop:
                bisect.insort(self._returned, (cut, stop))
            return Grant(worker, start, cut, since=self._clock())
        # 2. The tail: all of it for a lone worker, else a range inside the window.
        tail = self._tail
        if tail is not None and tail < limit and (self.end is None or tail < self.end):
            if self._lone(worker) and not second:
                self._tail = None if self.end is None else self.end
                return Grant(worker, tail, self.end, since=self._clock())
            if limit - tail <= 2 * self.grant_size:
                # The window is nearly all handed out: the consumer (a trainer slower than
                # its replicas) sets the pace, and a smaller grant would bring it no batch
                # sooner, only cost one more request (milliseconds of a server's Python).
                size = self.grant_size
            stop = min(tail + size, limit)
            if stop < tail + size and stop != self.end and tail > self.head:
                # The window has room for a sliver only: as many requests as batches, for
                # a stream its trainer paces. Wait for room for a whole grant; an overdue
                # head is still made again meanwhile.
                return None if second else self._duplicate(worker)
            self._tail = stop
            return Grant(worker, tail, stop, since=self._clock())
        if second:
            return None
        if tail is not None and (self.end is None or tail < self.end) and self.head in self._ready:
            # Only the window holds the tail back, and the consumer has its next batch: it
            # sets the pace, and a stolen half would be one more request for none sooner.
            return None
        # 3. Steal the later half of the busiest grant's unstarted positions.
        stolen = self._steal(worker, limit)
        if stolen is not None:
            return stolen
        # 4. Make an overdue head again.
        return self._duplicate(worker)

    def _steal(self, worker: int, limit: int) -> Grant | None:
        best: Grant | None = None
        best_unstarted = 1
        for grant in self._grants.values():
            if grant.worker == worker or grant.duplicate:
                continue
            stop = limit if grant.stop is None else min(grant.stop, limit)
            unstarted = stop - (grant.next + 1)
            if unstarted > best_unstarted:
                best, best_unstarted = grant, unstarted
        if best is None:
            return None
        middle = best.next + 1 + (best_unstarted + 1) // 2
        if best.stop is None:
            # An open-ended grant becomes a range; what lies past the thief's share is the
            # tail again.
            stop = min(middle + self.grant_size, limit)
            self._tail = stop
        else:
            stop = best.stop
        best.stop = middle
        return Grant(worker, middle, stop, since=self._clock())

    def _duplicate(self, worker: int) -> Grant | None:
        if self.head in self._ready or self._finished():
            return None
        owner = self._owner(self.head)
        if owner is None or owner.worker == worker:
            return None
        if self._clock() - owner.since < self._paces.patience():
            return None
        if any(g.duplicate and g.next == self.head for g in self._grants.values()):
            return None
        # The slow owner keeps only the batch it is on; its other positions go back.
        if owner.stop is None:
            self._tail = self.head + 1
        elif owner.stop > self.head + 1:
            bisect.insort(self._returned, (self.head + 1, owner.stop))
        owner.stop = self.head + 1
        return Grant(worker, self.head, self.head + 1, duplicate=True, since=self._clock())

    def _owner(self, position: int) -> Grant | None:
        for grant in self._grants.values():
            if (
                not grant.duplicate
                and grant.next <= position
                and (grant.stop is None or position < grant.stop)
            ):
                return grant
        return None

    def _head_unowned(self) -> bool:
        return self.head not in self._ready and self._owner(self.head) is None

    def _give_back(self, grant: Grant) -> None:
        if grant.duplicate:
            return
        start = max(grant.next, self.head)
        stop = grant.stop
        if stop is None or stop == self._tail:
            # Its positions run on into the tail: they become the tail again.
            self._tail = start
            return
        if start < stop:
            bisect.insort(self._returned, (start, stop))

    def _drop(self, grant: Grant, position: int) -> None:
        del self._grants[grant.id]
        grant.next = position
        self._give_back(grant)
