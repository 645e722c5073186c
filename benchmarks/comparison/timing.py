"""Time a source of batches the same way for every contender."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Figures", "measure"]


@dataclass(frozen=True)
class Figures:
    """What one contender did in its timed window."""

    images: int
    seconds: float
    nbytes: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def measure(batches: Iterator[np.ndarray[Any, Any]], count: int, warmup: int = 1) -> Figures:
    """Take ``warmup`` batches untimed (start-up, first connection, graph tracing), then
    time the next ``count``. Each batch must be a float32 array in the caller's hands."""
    for _ in range(warmup):
        _check(next(batches))
    images = nbytes = 0
    started = time.perf_counter()
    for _ in range(count):
        x = next(batches)
        _check(x)
        images += len(x)
        nbytes += x.nbytes
    return Figures(images, time.perf_counter() - started, nbytes)


def _check(x: np.ndarray[Any, Any]) -> None:
    if x.dtype != np.float32 or x.ndim != 4:
        raise TypeError(f"a contender delivered {x.dtype} of shape {x.shape}, not float32 NHWC")
