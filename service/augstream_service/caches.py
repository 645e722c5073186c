"""Caches shared by every stream and client, each bounded in bytes.

``Cache.claim`` gives single flight: of several threads that miss the same key at once, one
computes it and the others wait for its result, so ten students streaming one dataset cost
one decode per image, not ten. A cache may also draw its bytes from the server's memory
budget (``memory.CacheShare``), which asks it to ``shrink`` before a request is refused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .memory import CacheShare

__all__ = ["Cache", "Claim", "Flight"]

V = TypeVar("V")


@dataclass
class Flight:
    """A value being computed by one thread; others ``wait`` for it."""

    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class Claim(Generic[V]):
    """What ``claim`` found for a list of keys, by position."""

    found: dict[int, V]
    #: Positions this caller must compute and ``settle``.
    mine: list[int]
    #: Positions another thread is computing.
    theirs: dict[int, Flight]


class Cache(Generic[V]):
    """An LRU of values bounded by their total size in bytes (0 keeps nothing)."""

    def __init__(self, capacity_bytes: int, budget: CacheShare | None = None) -> None:
        self.capacity = capacity_bytes if budget is None else min(capacity_bytes, budget.capacity)
        self.budget = budget
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._flights: dict[Hashable, Flight] = {}
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            return self._lookup(key)

    def put(self, key: Hashable, value: V, nbytes: int) -> None:
        with self._lock:
            self._store(key, value, nbytes)

    def claim(self, keys: Sequence[Hashable]) -> Claim[V]:
        """Look up ``keys``; the misses nobody computes yet become the caller's to compute
        (positions in ``mine``), the others' flights are returned to wait on."""
        claim: Claim[V] = Claim({}, [], {})
        with self._lock:
            for i, key in enumerate(keys):
                value = self._lookup(key)
                if value is not None:
                    claim.found[i] = value
                elif key in self._flights:
                    claim.theirs[i] = self._flights[key]
                else:
                    claim.mine.append(i)
                    self._flights[key] = Flight()
        return claim

    def settle(
        self, key: Hashable, value: V | None, nbytes: int = 0, error: BaseException | None = None
    ) -> None:
        """Publish a claimed key's value (kept) or error (not kept: the next try may work)."""
        with self._lock:
            flight = self._flights.pop(key)
            if error is None and value is not None:
                self._store(key, value, nbytes)
        flight.value, flight.error = value, error
        flight.done.set()

    def figures(self) -> dict[str, int]:
        """Hits, misses, evictions, entries, bytes held and the capacity."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "entries": len(self._items),
                "bytes": self.nbytes,
                "capacity_bytes": self.capacity,
            }

    def _lookup(self, key: Hashable) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return entry[0]

    def shrink(self, nbytes: int) -> int:
        """Evict the least recently used values until ``nbytes`` are freed (or none is
        left); returns the bytes freed."""
        with self._lock:
            freed = 0
            while freed < nbytes and self._items:
                freed += self._evict()
            return freed

    def _evict(self) -> int:
        _, (_, freed) = self._items.popitem(last=False)
        self.nbytes -= freed
        self.evictions += 1
        if self.budget is not None:
            self.budget.give(freed)
        return freed

    def _store(self, key: Hashable, value: V, nbytes: int) -> None:
        if nbytes > self.capacity or key in self._items:
            return
        while self.nbytes + nbytes > self.capacity:
            self._evict()
        # The budget may be short of bytes the cache's own capacity allows: make room.
        while self.budget is not None and not self.budget.take(nbytes):
            if not self._items:
                return
            self._evict()
        self._items[key] = (value, nbytes)
        self.nbytes += nbytes
