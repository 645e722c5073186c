"""A live stream of batches: an endless iterator fed by a background reader thread.

The reader follows the stream's position (epoch, batch). When the connection breaks, the
body stops inside a frame, or a frame fails its checksum, it reconnects and asks for the
next batch it has not delivered, so no batch is lost or repeated.
"""

from __future__ import annotations

import contextlib
import queue
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from augstream_protocol.info import StreamHeader
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import COMPACT_REQUEST, BatchFrame, expand

from ._connection import RetryPolicy, check_same_stream, connect
from ._exceptions import StreamClosedError
from ._reader import CLOSED, END, Reader, following, rotated

__all__ = ["Batch", "RetryPolicy", "Stream"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Batch:
    """One batch and where it sits in the stream."""

    epoch: int
    index: int
    sample_ids: list[int]
    x: Array
    #: Labels: one array, a list of arrays (``class_mode='multi_output'``) or None.
    y: Array | list[Array] | None
    sample_weight: Array | None = None
    #: Samples of this batch the server left out (a dataset's ``skip`` policy for corrupt
    #: images): ``(sample id, reason)``. The batch is that much shorter.
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def as_keras(self) -> Any:
        """What Keras' iterators yield: ``(x, y)``, ``(x, y, sample_weight)`` when there are
        weights, or ``x`` alone when there are no labels."""
        if self.y is None:
            return self.x
        return (
            (self.x, self.y) if self.sample_weight is None else (self.x, self.y, self.sample_weight)
        )


def _as_batch(decoded: BatchFrame, header: StreamHeader) -> Batch:
    """A received batch as the caller gets it: compact images expanded to the floats asked
    for (here, in the caller's thread, not the reader's: the floats are allocated where the
    caller frees them, which lets the allocator reuse their memory; a reader thread's
    allocations of batches queued ahead come from and go back to the system each time, a
    page fault per 4 KiB. And the queue holds the compact bytes, a quarter of the floats.)"""
    arrays = decoded.arrays
    x = expand(arrays["x"], header.arrays["x"])
    spec = header.spec
    y: Array | list[Array] | None = arrays.get("y")
    if spec.class_mode == "input":
        y = x
    elif spec.class_mode == "multi_output":
        y = [arrays[f"y{i}"] for i in range(len(spec.arrays.y if spec.arrays else ()))]
    return Batch(
        decoded.epoch, decoded.batch, decoded.sample_ids, x, y, arrays.get("w"), decoded.skipped
    )


def _stop_all(readers: list[Reader]) -> None:
    for reader in readers:
        reader.stop()


class Stream(Iterator[Any]):
    """An endless (or, with ``epochs``, finite) iterator of ``(x, y)`` NumPy batches.

    ``len(stream)`` is the number of batches per epoch, as Keras expects from its
    iterators; ``next(stream)`` never stops for an endless stream.

    Given several replicas (``http`` a sequence), the stream is spread over them: replica
    ``i`` makes every ``n``-th batch from the ``i``-th on, and the batches are delivered in
    order, byte-identical to one server's. When a replica fails, its part moves to the next.
    """

    def __init__(
        self,
        http: httpx.Client | Sequence[httpx.Client],
        spec: StreamSpec,
        *,
        headers: dict[str, str] | None = None,
        prefetch: int = 4,
        retry: RetryPolicy | None = None,
    ) -> None:
        https = [http] if isinstance(http, httpx.Client) else list(http)
        # Compact images are expanded as the caller takes each batch (``_as_batch``).
        headers = {COMPACT_REQUEST[0]: COMPACT_REQUEST[1], **(headers or {})}
        retry = retry or RetryPolicy()
        replicas = len(https)
        start = (spec.start.epoch, spec.start.batch)
        first = connect(https, spec.with_start(*start, stride=replicas), headers, retry)
        self._readers: list[Reader] = []
        # Stopped even when the stream is dropped without close().
        self._finalizer = weakref.finalize(self, _stop_all, self._readers)
        header = first.header
        per_epoch = header.batches_per_epoch
        self._readers.append(Reader(https, first, headers, max(1, prefetch), retry))
        for offset in range(1, replicas):
            position = following(start, per_epoch, offset)
            if header.spec.epochs is not None and position[0] >= header.spec.epochs:
                break  # a short finite stream: this part would be empty
            connection = connect(
                rotated(https, offset),
                header.spec.with_start(*position, stride=replicas),
                headers,
                retry,
            )
            check_same_stream(header, connection)
            self._readers.append(
                Reader(rotated(https, offset), connection, headers, max(1, prefetch), retry)
            )
        self._replicas = replicas
        self._turn = 0
        # The stream as one server would describe it.
        self._header = header.model_copy(update={"spec": header.spec.with_start(*start, stride=1)})
        self._failed: BaseException | None = None
        self._done = False
        self._closed = False
        self._position = start

    @property
    def header(self) -> StreamHeader:
        """The stream's header as the server sent it."""
        return self._header

    @property
    def spec(self) -> StreamSpec:
        """The resolved spec (with the seed the stream uses)."""
        return self._header.spec

    @property
    def class_indices(self) -> dict[str, int]:
        """Class name -> label index."""
        return dict(self._header.class_indices)

    @property
    def samples(self) -> int:
        """Images per epoch in this stream (its shard's share)."""
        return self._header.samples

    @property
    def batch_size(self) -> int:
        """Images per batch (the last batch of an epoch may hold fewer)."""
        return self.spec.batch_size

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, batch)`` of the batch ``next_batch()`` returns next."""
        return self._position

    @property
    def reconnects(self) -> int:
        """How many times the stream reconnected after a failure."""
        return sum(reader.reconnects for reader in self._readers)

    def __len__(self) -> int:
        return self._header.batches_per_epoch

    def __iter__(self) -> Stream:
        return self

    def generator(self) -> Generator[Any, None, None]:
        """A genuine Python generator over the stream, which Keras' ``fit`` accepts as is::

        model.fit(stream.generator(), steps_per_epoch=len(stream), epochs=5)
        """
        while True:
            try:
                batch = self.next_batch()
            except StopIteration:
                return
            yield batch.as_keras()

    def next_batch(self, timeout: float | None = None) -> Batch:
        """The next batch with its position and sample ids."""
        if self._failed is not None:
            raise self._failed
        if self._done:
            raise StopIteration
        if self._closed:
            raise StreamClosedError("the stream is closed")
        if self._turn >= len(self._readers):  # the part that would start past the end
            self._done = True
            raise StopIteration
        reader = self._readers[self._turn]
        try:
            item = reader.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no batch within {timeout} s") from None
        if item is END or item is CLOSED or isinstance(item, BaseException):
            # Final states stay in the queue, so every consumer thread sees them.
            with contextlib.suppress(queue.Full):
                reader.queue.put_nowait(item)
        if item is CLOSED:
            raise StreamClosedError("the stream is closed")
        if item is END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._failed = item
            raise item
        batch = _as_batch(item, reader.header)
        self._position = following((batch.epoch, batch.index), len(self))
        self._turn = (self._turn + 1) % self._replicas
        return batch

    def __next__(self) -> Any:
        return self.next_batch().as_keras()

    def next(self) -> Any:
        """Keras 2 style alias of ``next(stream)``."""
        return self.__next__()

    def close(self) -> None:
        """Stop the stream and free its connection; later reads raise ``StreamClosedError``."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
