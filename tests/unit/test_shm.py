"""Shared-memory blocks (``shm``): a batch cache keeps no more of them than a share of the
process's open files allows (each holds two), so a cache of thousands of small batches
leaves descriptors for connections and files; the blocks are counted as they go."""

from __future__ import annotations

import os
import resource

import pytest

from augstream_service import shm
from augstream_service.shm import Blocks, held_blocks, shm_has_room

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="POSIX shared memory")


def test_a_cache_keeps_no_more_blocks_than_a_share_of_the_open_files_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not shm_has_room(4096):
        pytest.skip("/dev/shm is too small here for a cache to keep blocks at all")
    # 400 open files: a quarter of them is 100, two per block, so 50 blocks in all.
    monkeypatch.setattr(shm.resource, "getrlimit", lambda _: (400, resource.RLIM_INFINITY))
    blocks = Blocks()
    before = held_blocks()
    taken = []
    while shm_has_room(4096) and len(taken) < 200:
        taken.append(blocks.take(4096))
    assert held_blocks() == before + len(taken) == 50
    blocks.give(taken.pop())  # back to the pool's free blocks: still held
    assert held_blocks() == 50 and not shm_has_room(4096)
    blocks.close()
    assert held_blocks() == before and shm_has_room(4096)
