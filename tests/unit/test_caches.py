"""The shared caches: bounded in bytes, least recently used out first, one computation per
key however many threads miss it at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from augstream_service.caches import Cache


def test_the_least_recently_used_go_first_and_the_bound_holds() -> None:
    cache: Cache[bytes] = Cache(10)
    cache.put("a", b"aaaa", 4)
    cache.put("b", b"bbbb", 4)
    assert cache.get("a") == b"aaaa"  # "a" is now the most recent
    cache.put("c", b"cccc", 4)
    assert cache.get("b") is None and cache.get("a") == b"aaaa" and cache.get("c") == b"cccc"
    cache.put("huge", b"x" * 11, 11)  # larger than the whole cache: not kept, nothing evicted
    figures = cache.figures()
    assert figures["bytes"] == 8 <= figures["capacity_bytes"]
    assert figures["entries"] == 2 and figures["evictions"] == 1
    assert (figures["hits"], figures["misses"]) == (3, 1)


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache: Cache[bytes] = Cache(0)
    cache.put("a", b"a", 1)
    assert cache.get("a") is None and cache.figures()["entries"] == 0


def test_concurrent_misses_compute_each_key_once() -> None:
    cache: Cache[int] = Cache(1 << 20)
    computed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def fetch(keys: list[str]) -> list[int]:
        start.wait()
        claim = cache.claim(keys)
        for i in claim.mine:
            with lock:
                computed.append(keys[i])
            time.sleep(0.01)  # long enough for the others to find the flight
            cache.settle(keys[i], len(keys[i]), 8)
        found = dict(claim.found)
        found.update({i: flight.wait() for i, flight in claim.theirs.items()})
        return [found.get(i, len(keys[i])) for i in range(len(keys))]

    keys = [f"image-{n}" for n in range(20)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, [keys[s:] + keys[:s] for s in range(8)]))
    assert sorted(computed) == sorted(keys)  # each once, by whichever thread came first
    assert all(sorted(r) == sorted(len(k) for k in keys) for r in results)


def test_a_failed_computation_reaches_the_waiters_and_is_not_kept() -> None:
    cache: Cache[int] = Cache(100)
    first = cache.claim(["k"])
    second = cache.claim(["k"])
    assert first.mine == [0] and 0 in second.theirs
    cache.settle("k", None, error=OSError("store down"))
    with pytest.raises(OSError, match="store down"):
        second.theirs[0].wait()
    assert cache.claim(["k"]).mine == [0]  # the next reader tries again
