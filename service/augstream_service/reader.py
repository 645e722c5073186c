"""Read and decode a batch's images through the shared caches.

Two caches, both keyed by the dataset's generation (bumped when it is re-listed, so a file
replaced in the store is read again): the files' bytes, and the decoded images at a stream's
target size. A decoded image is a pure function of its bytes and the decoding fields of the
spec, so streams that share those share the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import numpy as np

from augstream_protocol.spec import StreamSpec

from .caches import Cache
from .catalog import Dataset
from .decode import DecodeError, decode_image
from .limits import Limits, shown
from .memory import CacheShare, MemoryBudget
from .stores import SourceError

__all__ = ["Counts", "ImageReader", "SampleError"]

Array = np.ndarray[Any, Any]


class SampleError(RuntimeError):
    """One sample could not be read or decoded; names the dataset and the file."""


class Counts(Protocol):
    """Where the reader counts its stage timings and errors (``Metrics``, or a worker
    process's tally)."""

    def observe(self, stage: str, seconds: float) -> None: ...

    def error(self, kind: str, count: int = 1) -> None: ...


class ImageReader:
    """Decoded images of any dataset, shared by every stream of the server."""

    def __init__(
        self,
        byte_cache_bytes: int,
        image_cache_bytes: int,
        metrics: Counts | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.metrics = metrics

        def share(capacity: int) -> CacheShare | None:
            return None if budget is None else budget.share(capacity)

        self.bytes: Cache[bytes] = Cache(byte_cache_bytes, share(byte_cache_bytes))
        self.images: Cache[Array] = Cache(image_cache_bytes, share(image_cache_bytes))
        if budget is not None:
            # Decoded images are cheaper to make again than bytes from a store: they go first.
            budget.add_reclaimer(self.images.shrink)
            budget.add_reclaimer(self.bytes.shrink)
        self.decodes = 0
        self.reads = 0
        self._lock = threading.Lock()

    def read(
        self, dataset: Dataset, relatives: Sequence[str], spec: StreamSpec, limits: Limits
    ) -> list[Array | SampleError]:
        """The images of ``relatives`` at the spec's target size (read-only uint8 HxWxC),
        or the error of each that could not be read or decoded."""
        if not dataset.cache or not self.images.capacity:
            return self._decode_many(dataset, relatives, spec, limits)
        decoding = (
            spec.color_mode,
            spec.target_size,
            spec.interpolation,
            spec.keep_aspect_ratio,
            _reduces(spec),
        )
        keys: list[Hashable] = [
            (dataset.name, dataset.generation, relative, decoding) for relative in relatives
        ]
        claim = self.images.claim(keys)
        out: list[Array | SampleError | None] = [None] * len(keys)
        for i, image in claim.found.items():
            out[i] = image
        try:
            computed = self._decode_many(dataset, [relatives[i] for i in claim.mine], spec, limits)
        except BaseException as exc:  # waiting streams must not wait forever
            for i in claim.mine:
                self.images.settle(keys[i], None, error=exc)
            raise
        for i, result in zip(claim.mine, computed, strict=True):
            if isinstance(result, SampleError):
                self.images.settle(keys[i], None, error=result)
            else:
                self.images.settle(keys[i], result, result.nbytes)
            out[i] = result
        for i, flight in claim.theirs.items():
            try:
                out[i] = flight.wait()
            except SampleError as exc:
                out[i] = exc
        return [result for result in out if result is not None]

    def figures(self) -> dict[str, Any]:
        """Decodes, store reads and both caches' counters."""
        return {
            "decodes": self.decodes,
            "store_reads": self.reads,
            "images": self.images.figures(),
            "bytes": self.bytes.figures(),
        }

    def _decode_many(
        self, dataset: Dataset, relatives: Sequence[str], spec: StreamSpec, limits: Limits
    ) -> list[Array | SampleError]:
        out: list[Array | SampleError] = []
        fetched = self._bytes(dataset, relatives, limits)
        started = time.perf_counter()
        for relative, data in zip(relatives, fetched, strict=True):
            if isinstance(data, SourceError):
                out.append(SampleError(f"({dataset.name}/{shown(relative)}): {data}"))
                self._count_error("unreadable_sample")
                continue
            with self._lock:
                self.decodes += 1
            try:
                image = decode_image(
                    data,
                    color_mode=spec.color_mode,
                    target_size=spec.target_size,
                    interpolation=spec.interpolation,
                    keep_aspect_ratio=spec.keep_aspect_ratio,
                    max_pixels=limits.max_image_pixels,
                    max_bytes=limits.max_image_bytes,
                    reduce=_reduces(spec),
                )
            except DecodeError as exc:
                out.append(SampleError(f"({dataset.name}/{shown(relative)}): {exc}"))
                self._count_error("corrupt_sample")
                continue
            image.flags.writeable = False  # shared: augmentation writes into its own buffer
            out.append(image)
        if self.metrics is not None and relatives:
            self.metrics.observe("decode", time.perf_counter() - started)
        return out

    def _count_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.error(kind)

    def _bytes(
        self, dataset: Dataset, relatives: Sequence[str], limits: Limits
    ) -> list[bytes | SourceError]:
        keys = [(dataset.name, dataset.generation, relative) for relative in relatives]
        out: list[bytes | SourceError | None] = [
            self.bytes.get(key) if dataset.cache else None for key in keys
        ]
        missing = [i for i, data in enumerate(out) if data is None]
        if missing:
            wanted = [relatives[i] for i in missing]
            started = time.perf_counter()
            fetched = dataset.store.read_many(wanted, limits.max_file_bytes)
            if self.metrics is not None:
                self.metrics.observe("read", time.perf_counter() - started)
            with self._lock:
                self.reads += len(missing)
            for i, data in zip(missing, fetched, strict=True):
                out[i] = data
                if dataset.cache and isinstance(data, bytes):
                    self.bytes.put(keys[i], data, len(data))
        return [data for data in out if data is not None]


def _reduces(spec: StreamSpec) -> bool:
    # Keras' legacy path decodes at full size (PIL) and resizes: "keras-legacy" does the same.
    # A reduced JPEG's size is rounded up to whole blocks, so it would not cover exactly the
    # pixels of its full-size PNG mask: images with masks decode at full size too.
    return spec.compat != "keras-legacy" and spec.class_mode != "mask"
