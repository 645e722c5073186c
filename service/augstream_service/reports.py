"""What the worker processes report through shared memory rather than in pickled replies.

A batch's outcome lies in its block, after its images and masks (``Outcome``): each slot's
CRC-32 and whether it is one, and each owner's seconds (augmenting, and the reader's stages).
Each worker's cache figures lie on a board of their own (``FiguresBoard``), which the server
reads only when it is asked for them. A reply per worker per batch cost the server thread a
poll, two reads and an unpickling for each worker, the part of a batch that grows with them
on a big box; only what is seldom there (a sample's error, an error count, a failure) still
comes as a reply, and the worker's announcement says whether one does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CACHE_FIGURES", "STAGES", "FiguresBoard", "Outcome", "OutcomeViews", "outcome_at"]

Array = np.ndarray[Any, Any]

#: The stages a worker's reader times (``reader.ImageReader``), after its seconds augmenting.
STAGES = ("read", "decode")
#: A cache's figures (``caches.LRUCache.figures``), in their order on the board.
CACHE_FIGURES = ("hits", "misses", "evictions", "entries", "bytes", "capacity_bytes")
_CACHES = ("images", "bytes")
#: A worker's row on the board: written or not, decodes, store reads, then each cache's
#: figures; padded to 128 bytes so that workers writing their rows share no cache line.
_ROW = 16
_WRITTEN, _DECODES, _READS, _CACHED = 0, 1, 2, 3


@dataclass(frozen=True)
class OutcomeViews:
    """A batch's outcome in its block: ``seconds[worker]`` (augmenting, then ``STAGES``),
    and per slot its image's CRC-32 and whether that is one (0: not computed)."""

    seconds: Array
    crcs: Array
    known: Array


@dataclass(frozen=True)
class Outcome:
    """Where a batch's outcome lies in its block: from ``offset``, for ``slots`` samples and
    ``workers`` owners."""

    offset: int
    slots: int
    workers: int

    @property
    def end(self) -> int:
        """The block's size: the outcome is its last part."""
        return self.offset + self.workers * (1 + len(STAGES)) * 8 + self.slots * 5

    def views(self, buffer: Any) -> OutcomeViews:
        """The outcome's arrays over ``buffer`` (the block, mapped in either process)."""
        seconds = np.ndarray(
            (self.workers, 1 + len(STAGES)), dtype=np.float64, buffer=buffer, offset=self.offset
        )
        at = self.offset + seconds.nbytes
        crcs = np.ndarray((self.slots,), dtype=np.uint32, buffer=buffer, offset=at)
        known = np.ndarray((self.slots,), dtype=np.uint8, buffer=buffer, offset=at + crcs.nbytes)
        return OutcomeViews(seconds, crcs, known)


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
    writes its row after each part of a batch it makes, the server reads it when asked."""

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
            found[cache] = dict(zip(CACHE_FIGURES, row[start:], strict=False))  # the padding left
        return found
