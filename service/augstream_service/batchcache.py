"""A cache of finished values made on a pool, bounded in bytes, with single flight by futures.

``FlightCache.fetch`` never blocks: a value it holds comes back as a done future, one being
made is joined (a future of its own, resolved when the making ends), and a missing one is
submitted to the pool. A caller that cancels its future leaves the flight; the last to leave
cancels a making not yet started. The bytes it holds are drawn from a ``Budget``: today one
of its own (``Allowance``), or, in the server, its share of the memory budget
(``memory.CacheShare``), which asks it to ``shrink`` before it refuses a request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, InvalidStateError
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Generic, Protocol, TypeVar

__all__ = ["Allowance", "Budget", "FlightCache", "Found", "relay"]

V = TypeVar("V")
R = TypeVar("R")


class Budget(Protocol):
    """Bytes a cache may hold. Shared between caches, it must be thread-safe."""

    @property
    def capacity(self) -> int:
        """The most bytes it could ever grant (a value larger is not worth evicting for)."""
        ...

    def take(self, nbytes: int) -> bool:
        """Grant ``nbytes`` now, or refuse (the cache then evicts and asks again)."""
        ...

    def give(self, nbytes: int) -> None:
        """Return ``nbytes`` granted earlier."""
        ...


class Allowance:
    """A budget of its own: ``capacity`` bytes for one cache (0: it keeps nothing)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        """Grant ``nbytes`` if they fit beside those granted."""
        with self._lock:
            if self.used + nbytes > self.capacity:
                return False
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        """Return ``nbytes``."""
        with self._lock:
            self.used -= nbytes


def relay(
    source: Future[V],
    into: Future[R],
    convert: Callable[[V], R],
    on_cancel: Callable[[], object],
) -> None:
    """Settle ``into`` as ``source`` settles: cancelled, failed, or with ``convert`` of its
    value (a failure of ``convert`` too); ``on_cancel()`` runs if ``into`` is cancelled
    first (its caller went away). Once settled, ``into`` holds nothing that leads back to
    ``source``: futures keep their callbacks, and a cycle through them would leave a batch
    for the garbage collector's rare full passes rather than free it."""
    hooks = [on_cancel]

    def settled(done: Future[R]) -> None:
        hook = hooks.pop()  # runs once, as ``into`` settles
        if done.cancelled():
            hook()

    into.add_done_callback(settled)
    source.add_done_callback(partial(_settle, into, convert))


def _settle(into: Future[R], convert: Callable[[V], R], done: Future[V]) -> None:
    try:
        if done.cancelled():
            into.cancel()
        elif (error := done.exception()) is not None:
            into.set_exception(error)
        else:
            try:
                value = convert(done.result())
            except Exception as exc:
                into.set_exception(exc)
            else:
                into.set_result(value)
    except InvalidStateError:
        pass


def _same(value: V) -> V:
    return value


class Found(Enum):
    """How ``fetch`` answered: held already, joined another caller's making, or made."""

    HELD = "held"
    JOINED = "joined"
    MADE = "made"


@dataclass
class _Flight(Generic[V]):
    result: Future[V] = field(default_factory=Future)
    task: Future[None] | None = None
    waiters: int = 0


class FlightCache(Generic[V]):
    """Values by key, least recently used evicted first, their bytes drawn from ``budget``."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._flights: dict[Hashable, _Flight[V]] = {}
        # Reentrant: cancelling a task runs its callbacks at once, and they take it too.
        self._lock = threading.RLock()
        self.nbytes = 0
        self.counts = dict.fromkeys(Found, 0)
        self.evictions = 0

    def fetch(
        self, key: Hashable, make: Callable[[], tuple[V, int]], executor: Executor
    ) -> tuple[Future[V], Found]:
        """The value of ``key`` as a future of the caller's own; ``make`` (on ``executor``)
        returns it and its size in bytes. Raises what ``executor.submit`` raises."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.counts[Found.HELD] += 1
                done: Future[V] = Future()
                done.set_result(item[0])
                return done, Found.HELD
            flight = self._flights.get(key)
            found = Found.JOINED
            if flight is None:
                flight = _Flight()
                # Submitted under the lock: a caller that joins sees the task to cancel.
                flight.task = executor.submit(self._make, key, flight, make)
                flight.task.add_done_callback(partial(self._finished, key, flight))
                self._flights[key] = flight
                found = Found.MADE
            flight.waiters += 1
            self.counts[found] += 1
        return self._ticket(flight), found

    def figures(self) -> dict[str, int]:
        """Values held, joined and made, evictions, entries, bytes held and the capacity."""
        with self._lock:
            return {
                **{found.value: count for found, count in self.counts.items()},
                "evictions": self.evictions,
                "entries": len(self._items),
                "bytes": self.nbytes,
                "capacity_bytes": self.budget.capacity,
            }

    def _ticket(self, flight: _Flight[V]) -> Future[V]:
        ticket: Future[V] = Future()
        relay(flight.result, ticket, _same, partial(self._leave, flight))
        return ticket

    def _leave(self, flight: _Flight[V]) -> None:
        with self._lock:
            flight.waiters -= 1
            if not flight.waiters and flight.task is not None:
                flight.task.cancel()  # not started yet: ``_finished`` forgets it

    def _finished(self, key: Hashable, flight: _Flight[V], task: Future[None]) -> None:
        """A making ended, or was cancelled before it started (its callers left, or the pool
        shut down)."""
        with self._lock:
            flight.task = None  # the task's callback holds the flight: no cycle
        if task.cancelled():
            self._forget(key, flight)
            flight.result.cancel()

    def _make(self, key: Hashable, flight: _Flight[V], make: Callable[[], tuple[V, int]]) -> None:
        try:
            value, nbytes = make()
        except BaseException as exc:  # reaches every waiter; not kept: the next try may work
            self._forget(key, flight)
            flight.result.set_exception(exc)
            return
        with self._lock:
            self._forget(key, flight)
            self._store(key, value, nbytes)
        flight.result.set_result(value)

    def shrink(self, nbytes: int) -> int:
        """Evict the least recently used values until ``nbytes`` are freed (or none is
        left), as the server's budget asks before it refuses a request; the bytes freed."""
        with self._lock:
            freed = 0
            while freed < nbytes and self._items:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size
                self.budget.give(size)
                self.evictions += 1
                freed += size
            return freed

    def _forget(self, key: Hashable, flight: _Flight[V]) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def _store(self, key: Hashable, value: V, nbytes: int) -> None:
        if nbytes > self.budget.capacity or key in self._items:
            return
        while not self.budget.take(nbytes):
            if not self._items:
                return
            _, (_, freed) = self._items.popitem(last=False)
            self.nbytes -= freed
            self.budget.give(freed)
            self.evictions += 1
        self._items[key] = (value, nbytes)
        self.nbytes += nbytes
