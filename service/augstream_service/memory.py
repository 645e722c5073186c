"""One memory budget for the whole server, which every consumer draws from before it allocates.

Streams (their batches in flight and the scratch that makes them), previews, fits, uploads
and the caches all take their bytes from one ``MemoryBudget``: a request that cannot fit is
refused (``MemoryBudgetError``: a 503 with ``Retry-After`` naming the budget) rather than
pushing the process past its container's limit. The caches shrink first: before anything is
refused they are asked to give bytes back (``add_reclaimer``).

What is counted is an estimate made before allocating (``costs``); the process also holds
what no request owns (the interpreter, libraries, buffers of the HTTP server), which the
docs state as the overhead on top of the budget.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

__all__ = [
    "BatchWindow",
    "MemoryBudget",
    "MemoryBudgetError",
    "Reservation",
    "default_budget",
    "memory_limit",
]

#: The share of the container's (or the machine's) memory the budget is by default: the rest
#: is the overhead (interpreter, libraries, allocator slack) and the page cache.
DEFAULT_SHARE = 0.75


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The bytes this process may use: its container's limit (cgroup v2 ``memory.max``, or
    v1 ``memory.limit_in_bytes``) when lower than the machine's memory, else the latter."""
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        limit = _read_int(path)  # "max" (no limit) is not a number
        if limit is not None and 0 < limit < machine:
            return limit
    return int(machine)


def default_budget() -> int:
    """The budget when none is set: ``DEFAULT_SHARE`` of ``memory_limit()``."""
    return int(memory_limit() * DEFAULT_SHARE)


class MemoryBudgetError(Exception):
    """A request does not fit in the server's memory budget now."""


class Reservation:
    """Bytes granted by a budget, given back once (``release``, or leaving a ``with``)."""

    def __init__(self, budget: MemoryBudget, nbytes: int, owner: str | None) -> None:
        self.budget = budget
        self.nbytes = nbytes
        self.owner = owner

    def release(self) -> None:
        """Give the bytes back (again: nothing)."""
        nbytes, self.nbytes = self.nbytes, 0
        if nbytes:
            self.budget._give(nbytes, self.owner)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class MemoryBudget:
    """``capacity`` bytes shared by requests and caches. Thread-safe.

    Requests ``reserve``; one owner (an API key, or an address) may hold at most
    ``owner_share`` of the capacity, and optional reservations (a stream's prefetch beyond
    its first batch) are granted only while ``headroom`` of it stays free for others.
    Caches draw through ``take``/``give`` (``batchcache.Budget``) and are asked to shrink
    when a reservation does not fit.
    """

    def __init__(self, capacity: int, *, owner_share: float = 1.0, headroom: float = 0.25) -> None:
        self.capacity = capacity
        self.owner_share = owner_share
        self.headroom = headroom
        self.reserved = 0
        self.cached = 0
        self.by_owner: Counter[str] = Counter()
        self.refusals = 0
        self._reclaimers: list[Callable[[int], int]] = []
        self._lock = threading.Lock()

    # --- requests ----------------------------------------------------------------------

    def reserve(
        self, nbytes: int, what: str, *, owner: str | None = None, optional: bool = False
    ) -> Reservation:
        """``nbytes`` for ``what`` (named in the refusal), shrinking the caches if need be;
        ``MemoryBudgetError`` when they do not fit."""
        found = self.try_reserve(nbytes, owner=owner, optional=optional)
        if found is None:
            raise MemoryBudgetError(self._refusal(nbytes, what, owner))
        return found

    def try_reserve(
        self, nbytes: int, *, owner: str | None = None, optional: bool = False
    ) -> Reservation | None:
        """``reserve``, answering None instead of raising. An optional reservation never
        makes the caches shrink: it is taken only from bytes free already."""
        shortfall = self._grant(nbytes, owner, optional)
        if shortfall is None:
            return Reservation(self, nbytes, owner)
        if optional or not self._reclaim(shortfall):
            with self._lock:
                self.refusals += not optional
            return None
        if self._grant(nbytes, owner, optional) is None:
            return Reservation(self, nbytes, owner)
        with self._lock:
            self.refusals += 1
        return None

    def _grant(self, nbytes: int, owner: str | None, optional: bool) -> int | None:
        """Grant now (None), or say how many bytes the caches would have to give back (0:
        none would help: the owner's share, or the headroom, is the limit)."""
        with self._lock:
            if owner is not None and self.by_owner[owner] + nbytes > self._owner_limit():
                return 0
            free = self.capacity - self.reserved - self.cached
            keep = int(self.capacity * self.headroom) if optional else 0
            if nbytes + keep > free:
                lacking = nbytes + keep - free
                return lacking if lacking <= self.cached else 0
            self.reserved += nbytes
            if owner is not None:
                self.by_owner[owner] += nbytes
            return None

    def _give(self, nbytes: int, owner: str | None) -> None:
        with self._lock:
            self.reserved -= nbytes
            if owner is not None:
                self.by_owner[owner] -= nbytes
                if not self.by_owner[owner]:
                    del self.by_owner[owner]

    def _owner_limit(self) -> int:
        return int(self.capacity * self.owner_share)

    def _refusal(self, nbytes: int, what: str, owner: str | None) -> str:
        mib = 1 << 20
        with self._lock:
            held = self.by_owner[owner] if owner is not None else 0
            if owner is not None and held + nbytes > self._owner_limit():
                return (
                    f"{what} needs {nbytes / mib:.0f} MiB of the server's memory budget; "
                    f"this key (or address) holds {held / mib:.0f} MiB of it already, and "
                    f"one may hold at most {self._owner_limit() / mib:.0f} MiB "
                    "(memory_budget_bytes x max_memory_share_per_key): retry when one of "
                    "its requests ends, or ask for less (batch_size, target_size)"
                )
            return (
                f"{what} needs {nbytes / mib:.0f} MiB of the server's memory budget "
                f"(memory_budget_bytes, {self.capacity / mib:.0f} MiB), of which "
                f"{self.reserved / mib:.0f} MiB are held by other requests now: retry "
                "later, or ask for less (batch_size, target_size)"
            )

    # --- caches ------------------------------------------------------------------------

    def add_reclaimer(self, shrink: Callable[[int], int]) -> None:
        """``shrink(nbytes)`` frees at least ``nbytes`` of a cache's bytes if it can and
        returns how many it freed (through ``give``); called without the budget's lock."""
        self._reclaimers.append(shrink)

    def _reclaim(self, nbytes: int) -> bool:
        freed = 0
        for shrink in self._reclaimers:
            freed += shrink(nbytes - freed)
            if freed >= nbytes:
                return True
        return False

    def take(self, nbytes: int) -> bool:
        """Grant a cache ``nbytes`` if they fit beside everything granted."""
        with self._lock:
            if self.reserved + self.cached + nbytes > self.capacity:
                return False
            self.cached += nbytes
            return True

    def give(self, nbytes: int) -> None:
        """A cache returns ``nbytes``."""
        with self._lock:
            self.cached -= nbytes

    def share(self, capacity: int) -> CacheShare:
        """A cache's part of the budget: at most ``capacity`` bytes, and only while the
        budget has them (``batchcache.Budget``)."""
        return CacheShare(self, capacity)

    def figures(self) -> dict[str, int]:
        """The capacity, bytes held by requests and by caches, and refusals so far."""
        with self._lock:
            return {
                "capacity_bytes": self.capacity,
                "reserved_bytes": self.reserved,
                "cached_bytes": self.cached,
                "refusals": self.refusals,
            }


class CacheShare:
    """At most ``capacity`` bytes of ``budget``, for one cache."""

    def __init__(self, budget: MemoryBudget, capacity: int) -> None:
        self.budget = budget
        self.capacity = min(capacity, budget.capacity)
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        """Grant ``nbytes`` if they fit in the share and in the budget."""
        with self._lock:
            if self.used + nbytes > self.capacity or not self.budget.take(nbytes):
                return False
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        """Return ``nbytes``."""
        with self._lock:
            self.used -= nbytes
        self.budget.give(nbytes)


class BatchWindow:
    """A stream's batches in flight or waiting to be sent, ``cost`` bytes each: the first is
    ``floor``, reserved when the stream was admitted, so a stream can always make progress;
    each further one is an optional reservation, taken only while the budget has bytes to
    spare (a stream that does not read holds little, whatever its ``prefetch``). No budget:
    every batch fits. Used from the event loop only."""

    def __init__(
        self,
        budget: MemoryBudget | None = None,
        cost: int = 0,
        owner: str | None = None,
        floor: Reservation | None = None,
    ) -> None:
        self.budget = budget
        self.cost = cost
        self.owner = owner
        self.floor = floor
        self.held = 0
        self._extra: list[Reservation] = []
        self._closing = False

    def take(self) -> bool:
        """Room for one more batch (always, when none is held)."""
        if self.held and self.budget is not None:
            extra = self.budget.try_reserve(self.cost, owner=self.owner, optional=True)
            if extra is None:
                return False
            self._extra.append(extra)
        self.held += 1
        return True

    def give(self) -> None:
        """A batch was sent (or dropped): its room goes back."""
        self.held -= 1
        if self._extra:
            self._extra.pop().release()

    def close_after(self, running: Sequence[Future[Any]]) -> None:
        """``close`` once every one of ``running`` (batches still being made) is done."""
        self._closing = True
        left = len(running)
        if not left:
            self.close()
            return
        lock = threading.Lock()

        def done(_: Future[Any]) -> None:
            nonlocal left
            with lock:
                left -= 1
                last = not left
            if last:
                self.close()

        for future in running:
            future.add_done_callback(done)

    def end(self) -> None:
        """The response is over: ``close``, unless the stream's frames are closing it
        already (``close_after``; they never ran when the client left before the first)."""
        if not self._closing:
            self.close()

    def close(self) -> None:
        """The stream ended: everything goes back, the floor too."""
        for extra in self._extra:
            extra.release()
        self._extra.clear()
        self.held = 0
        if self.floor is not None:
            self.floor.release()
