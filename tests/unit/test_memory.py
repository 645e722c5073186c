"""The server-wide memory budget: reservations, owners' shares, optional room, caches that
shrink first, a stream's window of batches; and the estimates against what numpy allocates."""

from __future__ import annotations

import tracemalloc
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service.caches import Cache
from augstream_service.costs import sample_scratch
from augstream_service.memory import (
    BatchWindow,
    MemoryBudget,
    MemoryBudgetError,
    memory_limit,
)

MIB = 1 << 20


def test_reservations_are_granted_until_the_budget_is_spent_and_name_it() -> None:
    budget = MemoryBudget(100 * MIB)
    first = budget.reserve(60 * MIB, "a batch")
    with pytest.raises(MemoryBudgetError, match="memory_budget_bytes, 100 MiB"):
        budget.reserve(60 * MIB, "a batch")
    first.release()
    first.release()  # once only
    with budget.reserve(100 * MIB, "a batch"):
        assert budget.figures()["reserved_bytes"] == 100 * MIB
    assert budget.figures()["reserved_bytes"] == 0
    assert budget.figures()["refusals"] == 1


def test_one_owner_holds_at_most_its_share() -> None:
    budget = MemoryBudget(100 * MIB, owner_share=0.5)
    budget.reserve(40 * MIB, "a stream", owner="key 0")
    with pytest.raises(MemoryBudgetError, match="max_memory_share_per_key"):
        budget.reserve(20 * MIB, "a stream", owner="key 0")
    budget.reserve(40 * MIB, "a stream", owner="key 1")


def test_optional_room_leaves_the_headroom_to_others() -> None:
    budget = MemoryBudget(100 * MIB, headroom=0.25)
    budget.reserve(50 * MIB, "floor")
    assert budget.try_reserve(20 * MIB, optional=True) is not None
    assert budget.try_reserve(20 * MIB, optional=True) is None  # 25 MiB must stay free
    assert budget.try_reserve(20 * MIB) is not None  # but not for one that must run


def test_caches_draw_from_the_budget_and_shrink_before_a_refusal() -> None:
    budget = MemoryBudget(100 * MIB)
    cache: Cache[bytes] = Cache(80 * MIB, budget.share(80 * MIB))
    budget.add_reclaimer(cache.shrink)
    for key in range(8):
        cache.put(key, b"x", 10 * MIB)
    assert budget.figures()["cached_bytes"] == 80 * MIB
    held = budget.reserve(50 * MIB, "a batch")  # only 20 free: the cache gives 30 back
    assert cache.nbytes == 50 * MIB
    assert cache.get(0) is None and cache.get(7) == b"x"  # the oldest went first
    # While requests hold the bytes, the cache keeps only what is left.
    for key in range(8, 16):
        cache.put(key, b"x", 10 * MIB)
    assert budget.figures()["cached_bytes"] == 50 * MIB
    held.release()
    with pytest.raises(MemoryBudgetError):
        budget.reserve(101 * MIB, "a batch")  # more than all: nothing is evicted in vain
    assert cache.nbytes == 50 * MIB


def test_a_window_always_has_room_for_one_batch_and_more_only_while_bytes_are_spare() -> None:
    budget = MemoryBudget(100 * MIB, headroom=0.25)
    floor = budget.reserve(30 * MIB, "a batch")
    window = BatchWindow(budget, 30 * MIB, None, floor)
    assert window.take() and window.take()  # the floor, then 30 spare of 70
    assert not window.take()  # 40 free, 25 of which must stay
    window.give()
    window.give()
    assert window.take()  # with none held, the floor is there
    assert budget.figures()["reserved_bytes"] == 30 * MIB
    making: Future[None] = Future()
    window.close_after([making])
    window.end()  # the response is over, but a batch is still being made
    assert budget.figures()["reserved_bytes"] == 30 * MIB
    making.set_result(None)
    assert budget.figures()["reserved_bytes"] == 0


def test_the_limit_comes_from_the_cgroup_when_it_is_lower(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert memory_limit(tmp_path) == 1 << 30
    (tmp_path / "memory.max").write_text("max\n")
    assert memory_limit(tmp_path) > 1 << 30  # the machine's


@pytest.mark.parametrize(
    "operations",
    [
        {},
        {"noise_std_range": (5.0, 20.0)},
        {"blur_sigma_range": (3.0, 3.0)},
        {"hue_shift_range": 30.0, "contrast_range": (0.5, 1.5)},
        {
            "saturation_range": (0.5, 1.5),
            "grayscale_probability": 1.0,
            "jpeg_quality_range": (50, 90),
        },
        {"brightness_range": (0.5, 1.5), "channel_shift_range": 20.0, "erasing_probability": 1.0},
    ],
)
def test_one_image_s_scratch_bounds_what_augmenting_it_allocates(operations: dict) -> None:
    from augstream_service.augment import apply, sample

    spec = StreamSpec(
        dataset="pets",
        target_size=(256, 256),
        rotation_range=10,
        rescale=1 / 255,
        seed=1,
        **operations,
    )
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    out = np.empty((256, 256, 3), np.float32)
    params = sample(np.random.default_rng(1), spec, image.shape)
    tracemalloc.start()
    try:
        apply(image, params, spec, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= sample_scratch(spec)
    assert sample_scratch(spec) <= 4 * max(peak, 256 * 256 * 3 * 4)  # an estimate, not a guess
