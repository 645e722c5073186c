"""Sampling: epoch order, shards and per-sample randomness are pure functions of their keys."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
import pytest

from augstream_service.sampling import (
    batch_indices,
    batches_per_epoch,
    epoch_order,
    positions,
    sample_rng,
    shard_size,
)

# Each (batch_size, count) runs every n from 0 to 25, where the off-by-one errors live;
# a few larger, awkward sizes follow.
SMALL_SIZES = range(26)
SMALL_CASES = [(SMALL_SIZES, b, c) for b in (1, 2, 3, 5, 7, 32) for c in (1, 2, 3, 4, 7, 30)]
LARGE_CASES = [
    ([1000], 32, 1),
    ([1001], 32, 3),
    ([997], 64, 8),
    ([5000], 7, 13),
    ([129], 128, 1),
    ([128], 128, 1),
]


def served(
    n: int, seed: int, epoch: int, batch_size: int, shuffle: bool, shard: tuple[int, int]
) -> list[np.ndarray]:
    """Every batch one shard serves in one epoch, in order."""
    index, count = shard
    return [
        batch_indices(
            n,
            seed=seed,
            epoch=epoch,
            batch=b,
            batch_size=batch_size,
            shuffle=shuffle,
            shard_index=index,
            shard_count=count,
        )
        for b in range(batches_per_epoch(n, batch_size, index, count))
    ]


# --- epoch order ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_epoch_order_is_a_permutation(n: int) -> None:
    order = epoch_order(n, 3, 0, True)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_epoch_order_is_deterministic_for_seed_and_epoch() -> None:
    first = epoch_order(500, 42, 3, True).copy()
    epoch_order.cache_clear()
    np.testing.assert_array_equal(epoch_order(500, 42, 3, True), first)


def test_epoch_order_differs_across_epochs_and_seeds() -> None:
    orders = {
        (seed, epoch): tuple(epoch_order(100, seed, epoch, True))
        for seed in (0, 1, 2**62)
        for epoch in range(4)
    }
    assert len(set(orders.values())) == len(orders)
    assert all(order != tuple(range(100)) for order in orders.values())


def test_epoch_order_is_the_identity_without_shuffle() -> None:
    for seed, epoch in [(0, 0), (7, 3)]:
        np.testing.assert_array_equal(epoch_order(50, seed, epoch, False), np.arange(50))


def test_epoch_order_cannot_be_changed_by_a_caller() -> None:
    order = epoch_order(10, 1, 1, True)
    with pytest.raises(ValueError, match="read-only"):
        order[0] = order[1]


# --- shards and batches --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "batch_size", "count"),
    SMALL_CASES + LARGE_CASES,
    ids=[f"n{min(s)}-{max(s)}-b{b}-c{c}" for s, b, c in SMALL_CASES + LARGE_CASES],
)
def test_shards_split_each_epoch_exactly_once_in_full_batches(
    sizes: Iterable[int], batch_size: int, count: int
) -> None:
    for n, epoch in itertools.product(sizes, (0, 1)):
        everything = []
        for index in range(count):
            batches = served(n, 9, epoch, batch_size, True, (index, count))
            size = shard_size(n, index, count)
            assert len(batches) == math.ceil(size / batch_size)
            assert all(len(b) == batch_size for b in batches[:-1])
            assert sum(len(b) for b in batches) == size
            if batches:
                assert 1 <= len(batches[-1]) <= batch_size
            everything += [int(i) for b in batches for i in b]
        assert sorted(everything) == list(range(n)), (epoch, n, batch_size, count)


@pytest.mark.parametrize(("n", "count"), [(0, 1), (10, 3), (11, 4), (3, 7), (1000, 9)])
def test_shard_sizes_add_up_and_differ_by_at_most_one(n: int, count: int) -> None:
    sizes = [shard_size(n, index, count) for index in range(count)]
    assert sum(sizes) == n
    assert max(sizes) - min(sizes) <= 1


def test_one_shard_serves_the_epoch_order_in_batches() -> None:
    batches = served(103, 5, 2, 10, True, (0, 1))
    np.testing.assert_array_equal(np.concatenate(batches), epoch_order(103, 5, 2, True))


def test_batch_indices_are_deterministic() -> None:
    kw = {"seed": 11, "epoch": 4, "batch": 2, "batch_size": 8, "shuffle": True}
    first = batch_indices(300, shard_index=1, shard_count=3, **kw).copy()
    epoch_order.cache_clear()
    np.testing.assert_array_equal(batch_indices(300, shard_index=1, shard_count=3, **kw), first)


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    [(0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (100, 32, 4), (96, 32, 3)],
)
def test_batches_per_epoch_counts_the_short_last_batch(n: int, batch_size: int, expected: int):
    assert batches_per_epoch(n, batch_size) == expected


@pytest.mark.parametrize("batch", [-1, 4, 100])
def test_batch_indices_out_of_range_raise_index_error(batch: int) -> None:
    # Shard 0 of 2 holds 10 of the 20 samples: batches of 3, 3, 3 and 1.
    total = batches_per_epoch(20, 3, 0, 2)
    assert total == 4
    with pytest.raises(IndexError, match=str(total)):
        batch_indices(
            20,
            seed=0,
            epoch=0,
            batch=batch,
            batch_size=3,
            shuffle=True,
            shard_index=0,
            shard_count=2,
        )


# --- positions -----------------------------------------------------------------------------


def test_positions_walk_every_batch_of_every_epoch_then_stop() -> None:
    assert list(positions(0, 0, 3, 2)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_positions_resume_mid_epoch_and_end_after_the_last_epoch() -> None:
    got = list(positions(1, 2, 4, 3))
    assert got == [(1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
    assert got[-1][0] == 3 - 1


@pytest.mark.parametrize(("start_epoch", "epochs"), [(2, 2), (5, 2)])
def test_positions_from_past_the_last_epoch_are_empty(start_epoch: int, epochs: int) -> None:
    assert list(positions(start_epoch, 0, 3, epochs)) == []


def test_positions_are_endless_without_epochs() -> None:
    got = list(itertools.islice(positions(5, 1, 3, None), 1000))
    assert got[:4] == [(5, 1), (5, 2), (6, 0), (6, 1)]
    assert len(got) == 1000
    assert got[-1] == divmod(5 * 3 + 1 + 999, 3)


def test_positions_with_no_batches_per_epoch_are_empty_even_when_endless() -> None:
    assert list(positions(0, 0, 0, None)) == []


@pytest.mark.parametrize("stride", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("epochs", [1, 3, None])
def test_strided_positions_interleave_into_the_whole_stream(
    stride: int, epochs: int | None
) -> None:
    """``stride`` replicas, the i-th starting i batches later, serve the stream between them:
    every position exactly once, in turn."""
    per_epoch, start = 4, (1, 1) if epochs != 1 else (0, 1)
    whole = list(itertools.islice(positions(*start, per_epoch, epochs), 40))
    parts = []
    for offset in range(stride):
        first = divmod(start[0] * per_epoch + start[1] + offset, per_epoch)
        parts.append(list(itertools.islice(positions(*first, per_epoch, epochs, stride), 40)))
    merged = [part[i] for i in range(40) for part in parts if i < len(part)][: len(whole)]
    assert merged == whole


def test_positions_refuse_a_start_batch_past_the_epoch() -> None:
    with pytest.raises(IndexError, match="3"):
        next(positions(0, 3, 3, None))


# --- per-sample randomness -----------------------------------------------------------------


@pytest.mark.parametrize("key", [(0, 0, 0), (42, 7, 123_456), (2**63 - 1, 10**6, 2**40)])
def test_sample_rng_draws_are_identical_for_identical_keys(key: tuple[int, int, int]) -> None:
    a = sample_rng(*key)
    b = sample_rng(*key)
    np.testing.assert_array_equal(a.random(16), b.random(16))
    np.testing.assert_array_equal(a.integers(0, 2**32, 16), b.integers(0, 2**32, 16))


def test_sample_rng_draws_differ_when_any_key_differs() -> None:
    keys = [
        (1, 2, 3),
        (0, 2, 3),  # seed
        (1, 0, 3),  # epoch
        (1, 2, 4),  # sample id
        (2, 1, 3),  # seed and epoch swapped
        (1, 3, 2),  # epoch and sample id swapped
        (12, 0, 3),  # digits moved between keys
    ]
    draws = {key: tuple(sample_rng(*key).random(4)) for key in keys}
    assert len(set(draws.values())) == len(keys)


def test_sample_rng_is_independent_of_the_epoch_order_stream() -> None:
    """A sample's draws must not replay the shuffle's stream for the same (seed, epoch)."""
    shuffled = epoch_order(1000, 5, 0, True)
    for sample_id in range(3):
        assert not np.array_equal(sample_rng(5, 0, sample_id).permutation(1000), shuffled)
