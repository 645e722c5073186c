"""Shared-memory blocks the worker processes write batches into (POSIX shared memory under
/dev/shm, Linux): made once and reused, their pages reserved before a worker writes them,
and how much of /dev/shm a cache may keep.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import defaultdict
from multiprocessing.shared_memory import SharedMemory

__all__ = ["Blocks", "SharedMemoryFullError", "held_blocks", "shm_free", "shm_has_room"]

#: Bytes of free shared-memory blocks kept for reuse (more are unlinked at once).
_FREE_BYTES = 512 << 20

#: Blocks this process holds, every pool's (each keeps two open files: ``SharedMemory``'s
#: descriptor and the one its mapping duplicates).
_held = 0
_held_lock = threading.Lock()


def held_blocks() -> int:
    """How many shared-memory blocks this process holds (in use, kept or free)."""
    return _held


def _count(change: int) -> None:
    global _held
    with _held_lock:
        _held += change


class SharedMemoryFullError(RuntimeError):
    """/dev/shm has no room for a batch's block."""


class Blocks:
    """Shared-memory blocks by size, reused: creating one costs a few system calls."""

    def __init__(self) -> None:
        self._free: dict[int, list[SharedMemory]] = defaultdict(list)
        self._free_bytes = 0
        #: Every block made and not unlinked yet (in use or free).
        self._all: dict[str, SharedMemory] = {}
        self._closed = False
        self._lock = threading.Lock()

    def take(self, size: int) -> SharedMemory:
        with self._lock:
            free = self._free.get(size)
            if free:
                self._free_bytes -= size
                return free.pop()
            block = SharedMemory(create=True, size=max(1, size))
            try:
                # Reserve the pages now: a tmpfs without room would otherwise take the block
                # and kill whoever first writes past its end (SIGBUS).
                _reserve(block.name, block.size)
            except OSError as exc:
                block.close()
                block.unlink()
                raise SharedMemoryFullError(f"/dev/shm: {exc.strerror}") from exc
            self._all[block.name] = block
            _count(1)
            return block

    def give(self, block: SharedMemory) -> None:
        """``block`` is no longer viewed (its last array is gone)."""
        with self._lock:
            # After close (a batch kept past the server's stop): never kept again.
            if not self._closed and self._free_bytes + block.size <= _FREE_BYTES:
                self._free[block.size].append(block)
                self._free_bytes += block.size
                return
            known = self._all.pop(block.name, None)
        block.close()
        if known is not None:
            block.unlink()
            _count(-1)

    def close(self) -> None:
        """Unlink every block (one still viewed stays mapped until its arrays go)."""
        with self._lock:
            self._closed = True
            free = [b for blocks in self._free.values() for b in blocks]
            self._free.clear()
            self._free_bytes = 0
            every, self._all = list(self._all.values()), {}
        for block in every:
            block.unlink()
        _count(-len(every))
        for block in free:
            block.close()


def _reserve(name: str, size: int) -> None:
    fd = os.open(f"/dev/shm/{name.lstrip('/')}", os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def shm_free() -> int:
    found = os.statvfs("/dev/shm")
    return found.f_bavail * found.f_frsize


#: What a cache leaves free of /dev/shm when it keeps blocks: this share of its size, and
#: at least ``_SHM_KEEP_MIN`` (the workers' next batches need blocks too).
_SHM_KEEP_SHARE = 0.25
_SHM_KEEP_MIN = 256 << 20
#: The share of the process's open files the blocks may take: a cache of small batches
#: (32 x 32 images: 0.4 MB a batch) could keep thousands of blocks, and their descriptors
#: would leave none for connections and files.
_FILES_SHARE = 0.25


def shm_has_room(nbytes: int) -> bool:
    """Whether a cache may keep a batch's block of ``nbytes`` (rather than a copy of the
    batch) and leave the workers room: a roomy /dev/shm (a host's, or a container's given
    gigabytes) keeps blocks, saving a copy and a fresh allocation per batch; a small one
    (a container's default 64 MiB) gets copies, so blocks go back to the pool at once. So
    do the batches past what a share of the open files allows (``_FILES_SHARE``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and 2 * (_held + 1) > _FILES_SHARE * soft:
        return False
    try:
        found = os.statvfs("/dev/shm")
    except OSError:
        return False
    size = found.f_blocks * found.f_frsize
    free = found.f_bavail * found.f_frsize
    return free - nbytes >= max(_SHM_KEEP_SHARE * size, _SHM_KEEP_MIN)
