"""Compact images expanded to floats on several cores, for a consumer that reads faster
than one core can expand: ``float32(x) * scale`` over a batch of 32 224x224 images takes
~2 ms on one core here (``python -m benchmarks.expand``), which with the rest of the
client's work held one client process near 10,000 images/s on a 16-core box
(docs/performance.md, "On 16 cores"). numpy's multiply releases the GIL, so the batch's
rows are split between the caller and a few pool threads, each writing its rows into the
one array the caller allocated (where it frees it: see ``stream._as_batch``); elementwise,
the same operation on the same values, so the same bits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from augstream_protocol.wire import expand

__all__ = ["EXPANDER", "THREADS_VARIABLE", "Expander", "default_threads"]

#: Smaller batches are expanded in the caller's thread alone: under ~1 ms of work the hand
#: over to the pool costs more than it saves.
MIN_FLOAT_BYTES = 4 << 20
#: By default at most this many threads per batch (the caller's among them): the copy is
#: bound by memory bandwidth beyond a few cores.
MAX_THREADS = 4
#: The pool's most threads, for all the process's streams together.
MAX_POOL = 16


#: The environment variable that sets the threads (1: the caller's thread alone).
THREADS_VARIABLE = "AUGSTREAM_EXPAND_THREADS"


def default_threads() -> int:
    """Threads to expand a batch with: ``AUGSTREAM_EXPAND_THREADS`` if set, else half the
    cores this process may use, up to ``MAX_THREADS``; one (the caller's alone) on a box of
    2 or 3 cores, where the trainer and the readers already keep them busy."""
    told = os.environ.get(THREADS_VARIABLE, "").strip()
    if told:
        try:
            return max(1, min(MAX_POOL + 1, int(told)))
        except ValueError:
            raise ValueError(f"{THREADS_VARIABLE} must be a whole number, not {told!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_THREADS, (cores or 1) // 2))


class Expander:
    """``expand`` for a stream's batches, on up to ``threads`` threads."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = None if threads is None else max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        """The threads a batch is expanded on: as given, else ``default_threads`` at each
        batch (the process's affinity may change; a wrong ``AUGSTREAM_EXPAND_THREADS``
        fails a stream, not an import)."""
        return default_threads() if self._threads is None else self._threads

    def __call__(self, x: np.ndarray[Any, Any], entry: Mapping[str, Any]) -> np.ndarray[Any, Any]:
        wire, rows = entry.get("wire"), x.shape[0] if x.ndim else 0
        compact = wire is not None and x.dtype == np.uint8 and entry.get("dtype") == "float32"
        parts = min(self.threads, rows) if compact else 1
        if parts < 2 or x.size * 4 < MIN_FLOAT_BYTES:
            return expand(x, entry)  # which also names what is wrong with an odd entry
        out = np.empty(x.shape, dtype=np.float32)
        step = -(-rows // parts)
        pool = self._here()
        futures: list[Future[np.ndarray[Any, Any]]] = []
        try:
            for i in range(step, rows, step):
                try:
                    futures.append(pool.submit(expand, x[i : i + step], entry, out[i : i + step]))
                except RuntimeError:  # the pool is shut down (interpreter exit, ``close``)
                    expand(x[i : i + step], entry, out[i : i + step])
            expand(x[:step], entry, out[:step])  # the caller's share
        finally:
            wait(futures)  # none left writing into ``out`` once this returns, or raises
        for future in futures:
            future.result()
        return out

    def _here(self) -> ThreadPoolExecutor:
        """This process's pool: a child forked from a process that had one (Keras'
        multiprocessing workers) inherits it without its threads, so it makes its own. Its
        threads start as batches need them (``threads`` - 1 per batch, several streams'
        batches at once), up to ``MAX_POOL``."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(MAX_POOL, "augstream-expand")
                self._pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Let the pool's threads end (the next batch starts a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=False)

    def _forget(self) -> None:
        """In a forked child: the parent's lock may have been held by a thread that is not
        there, and its pool has no threads."""
        self._lock = threading.Lock()
        self._pool = None


#: The process's expander, shared by its streams (one pool however many streams it reads).
EXPANDER = Expander()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=EXPANDER._forget)
