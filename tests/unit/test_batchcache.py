"""The batch cache: bounded in bytes drawn from a budget, least recently used out first, one
making per key however many ask at once, and a caller that leaves takes nothing from the
others."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from functools import partial

import pytest

from augstream_service.batchcache import Allowance, FlightCache, Found


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as executor:
        yield executor


def sized(value: str, made: list[str] | None = None) -> Callable[[], tuple[str, int]]:
    def make() -> tuple[str, int]:
        if made is not None:
            made.append(value)
        return value, len(value)

    return make


def blocked(pool: ThreadPoolExecutor) -> threading.Event:
    """Keep ``pool``'s one thread busy until the returned event is set."""
    release = threading.Event()
    pool.submit(release.wait)
    return release


def test_the_least_recently_used_go_first_and_the_bound_holds(pool: ThreadPoolExecutor) -> None:
    cache: FlightCache[str] = FlightCache(Allowance(10))
    for key in ("a", "b"):
        assert cache.fetch(key, sized(key * 4), pool)[0].result() == key * 4
    assert cache.fetch("a", sized("never"), pool)[1] is Found.HELD  # "a" is now the most recent
    cache.fetch("c", sized("cccc"), pool)[0].result()
    assert cache.fetch("b", sized("bbbb"), pool)[1] is Found.MADE  # "b" was evicted
    cache.fetch("huge", sized("x" * 11), pool)[0].result()  # larger than all: not kept
    figures = cache.figures()
    assert figures["bytes"] == 8 <= figures["capacity_bytes"] == 10
    assert (figures["entries"], figures["evictions"]) == (2, 2)
    assert (figures["held"], figures["made"]) == (1, 5)


def test_a_shared_budget_is_drawn_by_each_cache_for_its_own(pool: ThreadPoolExecutor) -> None:
    budget = Allowance(10)
    first: FlightCache[str] = FlightCache(budget)
    second: FlightCache[str] = FlightCache(budget)
    first.fetch("a", sized("a" * 8), pool)[0].result()
    second.fetch("b", sized("bbbb"), pool)[0].result()  # no room, and nothing of its own
    assert (first.nbytes, second.nbytes, budget.used) == (8, 0, 8)
    first.fetch("c", sized("cccc"), pool)[0].result()  # evicts its own "a"
    assert (first.nbytes, budget.used, first.evictions) == (4, 4, 1)


def test_concurrent_askers_share_one_making(pool: ThreadPoolExecutor) -> None:
    cache: FlightCache[str] = FlightCache(Allowance(100))
    made: list[str] = []
    release = blocked(pool)
    asked = [cache.fetch("k", sized("value", made), pool) for _ in range(5)]
    assert [found for _, found in asked] == [Found.MADE] + [Found.JOINED] * 4
    release.set()
    assert [future.result(timeout=10) for future, _ in asked] == ["value"] * 5
    assert made == ["value"]


def test_one_that_leaves_takes_nothing_from_the_others(pool: ThreadPoolExecutor) -> None:
    cache: FlightCache[str] = FlightCache(Allowance(100))
    made: list[str] = []
    release = blocked(pool)
    (maker, _), (joiner, _) = (cache.fetch("k", sized("v", made), pool) for _ in range(2))
    assert maker.cancel()  # the stream that asked first goes away
    release.set()
    assert joiner.result(timeout=10) == "v" and made == ["v"]


def test_a_making_nobody_waits_for_is_not_done(pool: ThreadPoolExecutor) -> None:
    cache: FlightCache[str] = FlightCache(Allowance(100))
    made: list[str] = []
    release = blocked(pool)
    asked = [cache.fetch("k", sized("v", made), pool)[0] for _ in range(2)]
    assert all(future.cancel() for future in asked)
    release.set()
    again, found = cache.fetch("k", sized("v", made), pool)
    assert found is Found.MADE and again.result(timeout=10) == "v" and made == ["v"]


def test_a_failure_reaches_every_waiter_and_is_not_kept(pool: ThreadPoolExecutor) -> None:
    cache: FlightCache[str] = FlightCache(Allowance(100))
    release = blocked(pool)

    def fail() -> tuple[str, int]:
        raise OSError("the store hiccupped")

    asked = [cache.fetch("k", fail, pool)[0] for _ in range(3)]
    release.set()
    for future in asked:
        with pytest.raises(OSError, match="hiccupped"):
            future.result(timeout=10)
    assert cache.fetch("k", sized("v"), pool)[0].result(timeout=10) == "v"


def test_a_pool_that_shuts_down_cancels_its_waiters() -> None:
    pool = ThreadPoolExecutor(1)
    cache: FlightCache[str] = FlightCache(Allowance(100))
    release = blocked(pool)
    waiting: Future[str] = cache.fetch("k", sized("v"), pool)[0]
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    with pytest.raises(CancelledError):
        waiting.result(timeout=10)
    with pytest.raises(RuntimeError):
        cache.fetch("k", sized("v"), pool)


def test_a_batch_nobody_holds_is_freed_at_once(pool: ThreadPoolExecutor) -> None:
    # Futures keep their callbacks: a reference cycle through them would keep an evicted
    # batch until the garbage collector's rare full pass (server memory past the bound).
    class Batch:
        pass

    cache: FlightCache[Batch] = FlightCache(Allowance(10))
    gc.disable()
    try:
        batch = Batch()
        gone = weakref.ref(batch)
        release = blocked(pool)
        make = partial(lambda held: (held, 8), batch)
        asked = [cache.fetch("k", make, pool)[0] for _ in range(2)]
        del make
        del batch
        left = asked.pop()
        assert left.cancel()  # one caller leaves, the other takes the batch
        release.set()
        assert asked.pop().result(timeout=10) is gone()
        cache.fetch("evicts k", lambda: (Batch(), 8), pool)[0].result(timeout=10)
        del left
        deadline = time.monotonic() + 5  # the pool's thread lets go of its task
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone() is None
    finally:
        gc.enable()
