"""What each epoch of a live stream holds: the order comes from ``(seed, epoch)``, each
sample's transform from ``(seed, epoch, sample id)`` (DESIGN.md, invariant 1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from augstream import Batch, Client

# Continuous draws: an epoch that repeats another's transforms cannot pass by chance.
WARPS: dict[str, Any] = dict(
    rotation_range=30, width_shift_range=0.2, zoom_range=0.25, brightness_range=(0.6, 1.4)
)
SAMPLES = 19  # the ``pets`` dataset


@pytest.fixture
def client(server_url: str):
    with Client(server_url) as c:
        yield c


def drain(client: Client, *, epochs: int, first: int = 0, **fields: Any) -> list[Batch]:
    """Every batch of a stream from the start of epoch ``first`` to the end of ``epochs``."""
    with client.stream(**fields, epochs=epochs, start=(first, 0)) as stream:
        return [stream.next_batch(timeout=60) for _ in range(len(stream) * (epochs - first))]


def by_epoch(batches: list[Batch], epoch: int) -> list[Batch]:
    return [b for b in batches if b.epoch == epoch]


def order(batches: list[Batch]) -> list[int]:
    return [i for b in batches for i in b.sample_ids]


def test_each_epoch_augments_a_sample_anew_and_an_epoch_repeats_exactly(
    client: Client,
) -> None:
    spec = dict(dataset="pets", target_size=(16, 16), batch_size=5, shuffle=False, seed=3, **WARPS)
    both = drain(client, **spec, epochs=2)
    first, second = by_epoch(both, 0), by_epoch(both, 1)
    # Not shuffled: the same samples sit at the same positions in both epochs.
    assert order(first) == order(second) == list(range(SAMPLES))
    for a, b in zip(first, second, strict=True):
        for k, sample_id in enumerate(a.sample_ids):
            assert not np.array_equal(a.x[k], b.x[k]), f"sample {sample_id}: epoch 1 = epoch 0"
    # Streamed again, each epoch is the same bytes: epoch 0 alone, epoch 1 from its start.
    again = drain(client, **spec, epochs=1) + drain(client, **spec, epochs=2, first=1)
    assert [(b.epoch, b.index, b.sample_ids) for b in again] == [
        (b.epoch, b.index, b.sample_ids) for b in both
    ]
    assert [b.x.tobytes() for b in again] == [b.x.tobytes() for b in both]


def test_the_shuffle_follows_the_seed_and_each_epoch_is_a_permutation(client: Client) -> None:
    # No augmentation: only the sample ids can tell two orders apart.
    spec = dict(dataset="pets", target_size=(8, 8), batch_size=4, epochs=2)
    orders = {
        seed: [order(by_epoch(drain(client, **spec, seed=seed), e)) for e in (0, 1)]
        for seed in (1, 2)
    }
    for epochs in orders.values():
        for ids in epochs:
            assert sorted(ids) == list(range(SAMPLES))  # every sample once per epoch
        assert epochs[0] != epochs[1]  # reshuffled each epoch
    assert orders[1][0] != orders[2][0] and orders[1][1] != orders[2][1]
    assert [order(by_epoch(drain(client, **spec, seed=1), e)) for e in (0, 1)] == orders[1]
