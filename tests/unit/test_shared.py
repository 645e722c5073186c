"""Which streams make the same batches every epoch, and which spec fields only place a
request in its stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service.shared import PLACEMENT, _owned, epochs_alike

BASE: dict[str, Any] = {"dataset": "pets", "shuffle": False, "seed": 1}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"rescale": 1 / 255},
        {"samplewise_center": True, "samplewise_std_normalization": True},
        {"interpolation": "bilinear", "keep_aspect_ratio": True},
        {"validation_split": 0.2, "subset": "validation"},
        {"shard": {"index": 1, "count": 2}},
    ],
)
def test_streams_that_draw_nothing_are_the_same_every_epoch(change: dict[str, Any]) -> None:
    assert epochs_alike(StreamSpec(**BASE, **change))


@pytest.mark.parametrize(
    "change",
    [
        {"shuffle": True},
        {"horizontal_flip": True},
        {"zoom_range": 0.1},
        {"brightness_range": (0.9, 1.1)},
        {"jpeg_quality_range": (50, 90)},
        {"erasing_probability": 0.5},
        {"mixup_alpha": 0.2},
        {"cutmix_alpha": 1.0},
    ],
)
def test_streams_that_draw_per_epoch_are_not(change: dict[str, Any]) -> None:
    assert not epochs_alike(StreamSpec(**{**BASE, **change}))


def test_the_placement_fields_are_spec_fields() -> None:
    assert set(StreamSpec.model_fields) >= PLACEMENT


def test_cached_arrays_hold_a_borrowed_buffer_only_where_there_is_room() -> None:
    # A worker process's batch views a shared-memory block; where /dev/shm is small the
    # cache keeps a copy, so the block goes back to its pool once the batch is made; where
    # it has room, the block itself (no copy). numpy's own memory is kept as is.
    block = bytearray(24)
    borrowed = np.ndarray((24,), dtype=np.uint8, buffer=block)[:12].reshape(3, 4)
    asked: list[int] = []

    def room(answer: bool) -> Callable[[int], bool]:
        return lambda nbytes: asked.append(nbytes) or answer

    kept = _owned(borrowed, room(False))
    assert kept.flags.owndata and kept.tobytes() == borrowed.tobytes()
    assert _owned(borrowed, room(True)) is borrowed and asked == [12, 12]
    own = np.zeros((4, 3), dtype=np.uint8)[:2]
    assert _owned(own, room(False)) is own and asked == [12, 12]
