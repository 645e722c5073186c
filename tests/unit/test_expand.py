"""Compact batches expanded on several threads (``augstream._expand``): the same bits as
one thread's ``expand``, whatever the split; small batches and uncompacted ones left to the
caller's thread; a forked child expands with a pool of its own."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest

from augstream._expand import MIN_FLOAT_BYTES, THREADS_VARIABLE, Expander, default_threads
from augstream_protocol.wire import expand
from tests.forked import in_forked_child

ENTRY: dict[str, Any] = {"dtype": "float32", "wire": {"dtype": "uint8", "scale": 1 / 255}}


def _batch(rows: int, side: int = 224, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 256, (rows, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize(("rows", "threads"), [(32, 2), (32, 3), (5, 3), (7, 4), (2, 4)])
def test_the_same_bits_as_one_thread_whatever_the_split(rows: int, threads: int) -> None:
    x = _batch(rows)
    got = Expander(threads)(x, ENTRY)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert got.tobytes() == expand(x, ENTRY).tobytes()


def test_the_rows_are_shared_with_pool_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[int, int] = {}

    def spy(x: np.ndarray[Any, Any], *args: Any) -> np.ndarray[Any, Any]:
        seen[threading.get_ident()] = seen.get(threading.get_ident(), 0) + len(x)
        return expand(x, *args)

    monkeypatch.setattr("augstream._expand.expand", spy)
    Expander(3)(_batch(32), ENTRY)
    # 11 + 11 + 10 rows: the caller's share and the pool's (one or two of its threads).
    assert seen[threading.get_ident()] == 11 and sum(seen.values()) == 32 and len(seen) >= 2


def test_small_uncompacted_or_single_threaded_batches_stay_in_the_caller_s_thread() -> None:
    small = _batch(2, side=16)
    assert small.size * 4 < MIN_FLOAT_BYTES
    expander = Expander(4)
    assert expander(small, ENTRY).tobytes() == expand(small, ENTRY).tobytes()
    floats = np.zeros((4, 8, 8, 3), np.float32)
    assert expander(floats, {"dtype": "float32"}) is floats
    assert expander._pool is None  # nothing was handed to a pool
    assert Expander(1)(_batch(32), ENTRY).tobytes() == expand(_batch(32), ENTRY).tobytes()


def test_out_must_fit_and_is_only_for_compact_images() -> None:
    x = _batch(2, side=8)
    with pytest.raises(ValueError, match="float32 of shape"):
        expand(x, ENTRY, np.empty((3, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="only for compact"):
        expand(x, {"dtype": "uint8"}, np.empty(x.shape, np.float32))


def _in_child(expander: Expander) -> bool:
    x = _batch(32, seed=1)
    return expander(x, ENTRY).tobytes() == expand(x, ENTRY).tobytes()


def test_a_forked_child_expands_with_a_pool_of_its_own() -> None:
    expander = Expander(3)
    expander(_batch(32), ENTRY)  # the parent's pool exists, with its threads
    assert in_forked_child(_in_child, expander) is True
    expander.close()


def test_half_the_cores_up_to_four_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert default_threads() == max(1, min(4, cores // 2))
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    assert default_threads() == 3 and Expander().threads == 3
    monkeypatch.setenv(THREADS_VARIABLE, "many")
    with pytest.raises(ValueError, match="AUGSTREAM_EXPAND_THREADS must be a whole number"):
        default_threads()


def test_a_shut_down_pool_leaves_the_rows_to_the_caller() -> None:
    expander, x = Expander(3), _batch(32)
    expander(x, ENTRY)
    expander._here().shutdown()  # as at interpreter exit, while a stream still reads
    assert expander(x, ENTRY).tobytes() == expand(x, ENTRY).tobytes()


def test_an_odd_entry_is_refused_before_any_row_is_handed_out() -> None:
    from augstream_protocol.wire import ProtocolError

    expander = Expander(3)
    with pytest.raises(ProtocolError, match="cannot expand"):
        expander(_batch(32), {"dtype": "uint8", "wire": {"dtype": "uint8", "scale": 0.5}})
    assert expander._pool is None
