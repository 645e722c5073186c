"""Shared-memory blocks the worker processes write batches into (POSIX shared memory under
/dev/shm, Linux): made once and reused, their pages reserved before a worker writes them,
and how much of /dev/shm a cache may keep.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from multiprocessing.shared_memory import SharedMemory

__all__ = ["Blocks", "SharedMemoryFullError", "shm_free", "shm_has_room"]

#: Bytes of free shared-memory blocks kept for reuse (more are unlinked at once).
_FREE_BYTES = 512 << 20


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


def shm_has_room(nbytes: int) -> bool:
    """Whether a cache may keep a batch's block of ``nbytes`` (rather than a copy of the
    batch) and leave the workers room: a roomy /dev/shm (a host's, or a container's given
    gigabytes) keeps blocks, saving a copy and a fresh allocation per batch; a small one
    (a container's default 64 MiB) gets copies, so blocks go back to the pool at once."""
    try:
        found = os.statvfs("/dev/shm")
    except OSError:
        return False
    size = found.f_blocks * found.f_frsize
    free = found.f_bavail * found.f_frsize
    return free - nbytes >= max(_SHM_KEEP_SHARE * size, _SHM_KEEP_MIN)
