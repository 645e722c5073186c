"""Which samples go in which batch, and each sample's random generator: pure functions.

Everything here depends only on its arguments, so any server, thread or restart computes
the same order (the determinism invariant). A shard is a stride through the epoch's
permutation, so shards are disjoint and together cover the epoch exactly once. Data-parallel
trainers must run the same number of steps: *equal* shards all have the largest shard's
number of batches (a shard one sample short splits a batch in two where it would have one
fewer), and shards that *drop the remainder* each take ``n // count`` samples, leaving out
the epoch's last ``n % count`` positions (other samples each epoch), so that every step is
the same size on every worker too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE_KEY",
    "batch_indices",
    "batch_rng",
    "batches_per_epoch",
    "epoch_order",
    "positions",
    "sample_rng",
    "shard_size",
]

# Distinct stream keys keep the order's and the samples' random streams independent.
_ORDER_KEY = 0x0BDE
_SAMPLE_KEY = 0x5A3E
#: The key of every sample's stream: ``augment.batched`` draws the same streams at once.
SAMPLE_KEY = _SAMPLE_KEY
_BATCH_KEY = 0xBA7C


@lru_cache(maxsize=64)
def epoch_order(
    n: int, seed: int, epoch: int, shuffle: bool
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The dataset indices of one epoch, in the order they are served (read-only, cached)."""
    if shuffle:
        key = np.random.SeedSequence([_ORDER_KEY, seed, epoch])
        order = np.random.Generator(np.random.PCG64(key)).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    order.flags.writeable = False
    return order


def shard_size(n: int, index: int, count: int, drop: bool = False) -> int:
    """How many of an epoch's ``n`` samples shard ``index`` of ``count`` receives (``drop``:
    every shard the same, ``n // count``)."""
    return n // count if drop else len(range(index, n, count))


def batches_per_epoch(
    n: int,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    equal: bool = False,
    drop: bool = False,
) -> int:
    """Batches in one epoch of a shard; the last one may be short, as in Keras. ``equal``:
    the largest shard's (shard 0's) count, for every shard."""
    index = 0 if equal else shard_index
    return math.ceil(shard_size(n, index, shard_count, drop) / batch_size)


def batch_indices(
    n: int,
    *,
    seed: int,
    epoch: int,
    batch: int,
    batch_size: int,
    shuffle: bool,
    shard_index: int = 0,
    shard_count: int = 1,
    equal: bool = False,
    drop: bool = False,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The dataset indices of batch ``batch`` of ``epoch`` in one shard."""
    total = batches_per_epoch(n, batch_size, shard_index, shard_count, equal, drop)
    if not 0 <= batch < total:
        raise IndexError(f"batch {batch} out of range: an epoch has {total} batches")
    shard = epoch_order(n, seed, epoch, shuffle)[shard_index::shard_count]
    if drop:
        shard = shard[: n // shard_count]
    start, end = batch * batch_size, (batch + 1) * batch_size
    if equal:
        # Full batches but where the shard's samples would run out before its batches: each
        # of the last batches keeps one sample for every batch after it (the shard has at
        # least as many samples as batches: ``equal_shards_fit``). Where the shard has as
        # many batches of its own, this is Keras' batching unchanged.
        left = len(shard)
        start, end = min(start, left - (total - batch)), min(end, left - (total - batch - 1))
    return shard[start:end]


def equal_shards_fit(n: int, batch_size: int, count: int) -> bool:
    """Whether ``count`` equal shards of ``n`` samples can each fill the same number of
    batches with at least one sample: the smallest shard has as many samples as batches."""
    return n // count >= batches_per_epoch(n, batch_size, 0, count, equal=True)


def positions(
    start_epoch: int,
    start_batch: int,
    per_epoch: int,
    epochs: int | None,
    stride: int = 1,
    count: int | None = None,
) -> Iterator[tuple[int, int]]:
    """``(epoch, batch)`` pairs from a start position to the end (forever if ``epochs`` is
    None), every ``stride``-th one, at most ``count`` of them: the part of a stream one
    replica serves (a fixed stride, or a range a client handed it)."""
    if per_epoch <= 0:
        return
    if start_batch >= per_epoch:
        raise IndexError(
            f"start batch {start_batch} out of range: an epoch has {per_epoch} batches"
        )
    index = start_epoch * per_epoch + start_batch
    given = 0
    while (epochs is None or index < epochs * per_epoch) and (count is None or given < count):
        yield divmod(index, per_epoch)
        index += stride
        given += 1


def sample_rng(seed: int, epoch: int, sample_id: int) -> np.random.Generator:
    """The random generator of one sample in one epoch, independent of batch and shard."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([_SAMPLE_KEY, seed, epoch, sample_id]))
    )


def batch_rng(seed: int, epoch: int, batch: int, shard_index: int = 0) -> np.random.Generator:
    """The random generator of one batch (mixup and cutmix pair its samples): a pure
    function of the batch's position, so replicas and resumed streams draw the same."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([_BATCH_KEY, seed, epoch, batch, shard_index]))
    )
