"""What the worker processes report through shared memory rather than in pickled replies.

A batch's outcome lies in its block, after its images and masks (``Outcome``): each slot's
CRC-32, and each owner's time augmenting and in the reader's stages.
Each worker's cache figures lie on a board of their own (``FiguresBoard``), which the server
reads only when it is asked for them. A reply per worker per batch cost the server thread a
poll, two reads and an unpickling for each worker, the part of a batch that grows with them
on a big box; only what is seldom there (a sample's error, an error count, a failure) still
comes as a reply, and the worker's announcement says whether one does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CACHE_FIGURES", "STAGES", "FiguresBoard", "Outcome", "outcome_at"]

Array = np.ndarray[Any, Any]

#: The stages a worker's reader times (``reader.ImageReader``), after its seconds augmenting.
STAGES = ("read", "decode")
#: A worker's times in an outcome: augmenting, then each stage.
_TIMES = 1 + len(STAGES)
#: A cache's figures (``caches.LRUCache.figures``), in their order on the board.
CACHE_FIGURES = ("hits", "misses", "evictions", "entries", "bytes", "capacity_bytes")
_CACHES = ("images", "bytes")
#: A worker's row on the board: written or not, decodes, store reads, then each cache's
#: figures; padded to 128 bytes so that workers writing their rows share no cache line.
_ROW = 16
_WRITTEN, _DECODES, _READS, _CACHED = 0, 1, 2, 3


@dataclass(frozen=True)
class Outcome:
    """Where a batch's outcome lies in its block: from ``offset``, for ``slots`` samples and
    ``workers`` owners, as int64s (one array to read: a numpy array per field would cost the
    server more than the rest of it): each worker's nanoseconds augmenting and in each of
    ``STAGES``, then each slot's CRC-32 (-1: not computed)."""

    offset: int
    slots: int
    workers: int

    @property
    def end(self) -> int:
        """The block's size: the outcome is its last part."""
        return self.offset + (self.workers * _TIMES + self.slots) * 8

    def _values(self, buffer: Any) -> Array:
        count = self.workers * _TIMES + self.slots
        return np.ndarray((count,), dtype=np.int64, buffer=buffer, offset=self.offset)

    def write(
        self,
        buffer: Any,
        index: int,
        slots: list[int],
        crcs: list[int | None],
        seconds: list[float],
    ) -> None:
        """Worker ``index``'s part: the CRC-32 of each of its ``slots`` (None: not computed)
        and its seconds augmenting and in each of ``STAGES``."""
        values = self._values(buffer)
        values[index * _TIMES : (index + 1) * _TIMES] = [round(s * 1e9) for s in seconds]
        at = self.workers * _TIMES
        where = np.asarray([at + slot for slot in slots], dtype=np.intp)
        values[where] = [-1 if crc is None else crc for crc in crcs]

    def read(self, buffer: Any, owners: Iterable[int]) -> tuple[list[int | None], list[float]]:
        """Each slot's CRC-32 (None: not computed), and the seconds augmenting and in each
        of ``STAGES`` summed over ``owners`` (the other rows are an earlier batch's)."""
        # A memoryview reads the int64s in a third of the time a numpy array takes to make.
        values: list[int] = memoryview(buffer).cast("B")[self.offset : self.end].cast("q").tolist()
        raw = values[self.workers * _TIMES :]
        crcs: list[int | None] = list(raw)
        if raw and min(raw) < 0:
            crcs = [None if crc < 0 else crc for crc in raw]
        sums = [0] * _TIMES
        for owner in owners:
            for n, spent in enumerate(values[owner * _TIMES : (owner + 1) * _TIMES]):
                sums[n] += spent
        return crcs, [spent / 1e9 for spent in sums]


def outcome_at(
    x_shape: tuple[int, ...], dtype: str, mask_shape: tuple[int, ...] | None, workers: int
) -> Outcome:
    """The outcome of a batch whose block holds images of ``x_shape`` and ``dtype`` (and
    masks of ``mask_shape``, uint8): after them, at a multiple of 8 bytes (float64)."""
    arrays = math.prod(x_shape) * np.dtype(dtype).itemsize
    arrays += math.prod(mask_shape) if mask_shape else 0
    return Outcome(-(-arrays // 8) * 8, x_shape[0], workers)


class FiguresBoard:
    """Each worker's cache figures, a row per worker in a shared-memory block: the worker
    writes its row after each part of a batch it makes, the server reads it when asked (a
    read while the worker writes may mix two of its reports: counters to watch, not to
    account by)."""

    def __init__(self, buffer: Any, workers: int) -> None:
        self._rows = np.ndarray((workers, _ROW), dtype=np.int64, buffer=buffer)

    def close(self) -> None:
        """Let go of the block (it can be unmapped once no array views it): none written."""
        self._rows = np.zeros_like(self._rows)

    @staticmethod
    def size(workers: int) -> int:
        return workers * _ROW * 8

    def write(self, index: int, figures: dict[str, Any]) -> None:
        """Worker ``index``'s figures (``reader.ImageReader.figures``)."""
        row = [1, figures["decodes"], figures["store_reads"]]
        for cache in _CACHES:
            row += [figures[cache][name] for name in CACHE_FIGURES]
        self._rows[index, : len(row)] = row

    def clear(self, index: int) -> None:
        """Worker ``index`` starts again: nothing of its figures yet."""
        self._rows[index] = 0

    def read(self, index: int) -> dict[str, Any] | None:
        """Worker ``index``'s latest figures, or None before it wrote any."""
        row = self._rows[index].tolist()
        if not row[_WRITTEN]:
            return None
        found: dict[str, Any] = {"decodes": row[_DECODES], "store_reads": row[_READS]}
        for n, cache in enumerate(_CACHES):
            start = _CACHED + n * len(CACHE_FIGURES)
            found[cache] = dict(
                zip(CACHE_FIGURES, row[start : start + len(CACHE_FIGURES)], strict=True)
            )
        return found
