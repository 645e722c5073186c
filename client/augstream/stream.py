"""A live stream of batches: an endless iterator fed by a background reader thread.

The reader follows the stream's position (epoch, batch). When the connection breaks, the
body stops inside a frame, or a frame fails its checksum, it reconnects and asks for the
next batch it has not delivered, so no batch is lost or repeated.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
import weakref
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from ._body import response_frames
from ._exceptions import (
    BusyError,
    ConnectionLostError,
    IncompatibleStreamError,
    ProtocolError,
    ServerError,
    StreamClosedError,
    TruncatedError,
)
from ._http import error_from_response
from .info import StreamHeader
from .spec import StreamSpec
from .wire import (
    COMPACT_REQUEST,
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    BatchFrame,
    Frame,
    FrameKind,
    decode_batch,
    expand,
)

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


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on a broken stream: capped exponential backoff.

    ``attempts`` counts consecutive failures without a batch delivered in between.
    """

    attempts: int = 6
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0

    def delay(self, failures: int, cause: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``failures`` (1-based); at least the server's
        ``Retry-After`` when ``cause`` is a busy answer."""
        delay = float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))
        return max(delay, cause.retry_after) if isinstance(cause, BusyError) else delay


def following(position: tuple[int, int], per_epoch: int, step: int = 1) -> tuple[int, int]:
    """The ``(epoch, batch)`` ``step`` batches after ``position`` in a stream of
    ``per_epoch`` batches per epoch."""
    epoch, batch = divmod(position[0] * per_epoch + position[1] + step, per_epoch)
    return epoch, batch


def _rotated(https: Sequence[httpx.Client], first: int) -> list[httpx.Client]:
    """The replicas in the order one sub-stream tries them: its own, then the next ones."""
    return [*https[first:], *https[:first]]


_END = object()
_CLOSED = object()


class _GoAwayError(Exception):
    """The server is stopping and handed the stream over: resume at the next batch."""


# Reasons to reconnect: the transport broke, the bytes that arrived are unusable, the server
# was busy, or it is going away.
_RETRYABLE = (httpx.TransportError, ProtocolError, BusyError, _GoAwayError)


class _Connection:
    """One HTTP response of a stream and its frame iterator."""

    def __init__(self, http: httpx.Client, spec: StreamSpec, headers: dict[str, str]) -> None:
        self._stack = ExitStack()
        try:
            self.response = self._stack.enter_context(
                http.stream("POST", "/v1/stream", json=spec.request_body(), headers=headers)
            )
            if self.response.status_code != 200:
                self.response.read()
                raise error_from_response(self.response)
            self.frames = response_frames(self.response, DEFAULT_MAX_FRAME_BYTES)
            self.header = _read_header(next(self.frames, None))
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def interrupt(self) -> None:
        """Wake a read blocked on this connection from another thread.

        Closing a socket does not wake a ``recv`` in progress; shutting it down does.
        """
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_header(first: Frame | None) -> StreamHeader:
    if first is None or first.kind != FrameKind.HEADER:
        raise ProtocolError("the stream did not start with a header frame")
    payload = first.json()
    if payload.get("protocol") != PROTOCOL_VERSION:
        raise IncompatibleStreamError(
            f"the server speaks protocol {payload.get('protocol')!r}; "
            f"this client speaks {PROTOCOL_VERSION}"
        )
    return StreamHeader.model_validate(payload)


def _connect(
    https: Sequence[httpx.Client], spec: StreamSpec, headers: dict[str, str], retry: RetryPolicy
) -> _Connection:
    """Open a stream on the first replica, retrying transient failures as a reconnect would
    (each retry on the next replica)."""
    failures = 0
    while True:
        http = https[failures % len(https)]
        try:
            return _Connection(http, spec, headers)
        except _RETRYABLE as exc:
            failures += 1
            if failures > retry.attempts:
                raise ConnectionLostError(
                    f"could not start the stream at {http.base_url} after "
                    f"{retry.attempts} retries; last error: {exc}"
                ) from exc
            time.sleep(retry.delay(failures, exc))


def _check_same_stream(first: StreamHeader, connection: _Connection) -> None:
    """Refuse to resume on a stream that is not the one we started (listing or spec changed)."""
    again = connection.header
    ignore = {"start"}
    same = (
        again.dataset_samples == first.dataset_samples
        and again.samples == first.samples
        and again.batches_per_epoch == first.batches_per_epoch
        and again.class_indices == first.class_indices
        and again.arrays == first.arrays
        and again.spec.model_dump(exclude=ignore) == first.spec.model_dump(exclude=ignore)
    )
    if not same:
        connection.close()
        raise IncompatibleStreamError(
            "the resumed stream differs from the one started (the dataset changed on the "
            "server, or another server holds different data); resuming would not be exact"
        )


def _server_error(frame: Frame) -> ServerError:
    error = frame.json().get("error", {})
    return ServerError(
        f"the server stopped the stream: {error.get('message', 'no message')}",
        status=500,
        kind=str(error.get("kind", "server_error")),
    )


class _Reader:
    """The background half of a stream. Holds no reference to the ``Stream`` object, so a
    stream that is dropped without ``close()`` is still collected and its reader stopped."""

    def __init__(
        self,
        https: list[httpx.Client],
        connection: _Connection,
        headers: dict[str, str],
        prefetch: int,
        retry: RetryPolicy,
    ) -> None:
        #: Its own replica first; a reconnect tries the next one (a dead replica's batches
        #: move to the others).
        self._https = https
        self._headers = headers
        self._connection: _Connection | None = connection
        self._retry = retry
        self.header = connection.header
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.reconnects = 0
        start = self.header.spec.start
        self._next = (start.epoch, start.batch)
        self._thread = threading.Thread(target=self._run, name="augstream-reader", daemon=True)
        self._thread.start()

    def _advance(self) -> None:
        spec = self.header.spec
        self._next = following(self._next, self.header.batches_per_epoch, spec.stride)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _batch(self, frame: Frame) -> BatchFrame:
        decoded = decode_batch(frame.body)
        if (decoded.epoch, decoded.batch) != self._next:
            raise ProtocolError(
                f"expected batch {self._next[1]} of epoch {self._next[0]}, "
                f"received batch {decoded.batch} of epoch {decoded.epoch}"
            )
        return decoded

    def _pump(self, connection: _Connection) -> bool:
        """Deliver the connection's batches; True when the stream is over."""
        for frame in connection.frames:
            if self._stop.is_set():
                return True
            if frame.kind == FrameKind.BATCH:
                if not self._put(self._batch(frame)):
                    return True
                self._advance()
                self._failures = 0
            elif frame.kind == FrameKind.END:
                self._put(_END)
                return True
            elif frame.kind == FrameKind.ERROR:
                self._put(_server_error(frame))
                return True
            elif frame.kind == FrameKind.GOAWAY:
                # Not a failure: the retry budget starts afresh for the hand-over.
                self._failures = 0
                raise _GoAwayError(frame.json().get("reason", "the server is going away"))
            elif frame.kind == FrameKind.HEADER:
                raise ProtocolError("a second header frame arrived mid-stream")
        raise TruncatedError("the stream ended without an end frame")

    def _reconnect(self, cause: BaseException) -> _Connection | None:
        while not self._stop.is_set():
            self._failures += 1
            if self._failures > self._retry.attempts:
                raise ConnectionLostError(
                    f"stream lost at batch {self._next[1]} of epoch {self._next[0]} and "
                    f"{self._retry.attempts} reconnects failed; last error: {cause}"
                ) from cause
            if self._stop.wait(self._retry.delay(self._failures, cause)):
                return None
            try:
                spec = self.header.spec.with_start(*self._next)
                http = self._https[self._failures % len(self._https)]
                connection = _Connection(http, spec, self._headers)
            except _RETRYABLE as exc:
                cause = exc
                continue
            _check_same_stream(self.header, connection)
            self.reconnects += 1
            return connection
        return None

    def _run(self) -> None:
        self._failures = 0
        try:
            while not self._stop.is_set():
                connection = self._connection
                if connection is None:
                    return
                try:
                    if self._pump(connection):
                        return
                except _RETRYABLE as exc:
                    cause: BaseException = exc
                finally:
                    connection.close()
                with self._lock:
                    if self._stop.is_set():
                        return
                epochs = self.header.spec.epochs
                if epochs is not None and self._next[0] >= epochs:
                    # Every batch arrived; only the end frame was lost.
                    self._put(_END)
                    return
                self._connection = self._reconnect(cause)
        except Exception as exc:  # surfaced to the consumer rather than lost in a thread
            self._put(exc)
        finally:
            if self._connection is not None:
                self._connection.close()

    def stop(self) -> None:
        """Stop reading and release the connection (idempotent, any thread)."""
        self._stop.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            # The reader thread closes the connection itself once its read returns.
            with contextlib.suppress(Exception):
                connection.interrupt()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        # A consumer blocked on an empty queue wakes up and learns the stream is closed.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(_CLOSED)


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


def _stop_all(readers: list[_Reader]) -> None:
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
        first = _connect(https, spec.with_start(*start, stride=replicas), headers, retry)
        self._readers: list[_Reader] = []
        # Stopped even when the stream is dropped without close().
        self._finalizer = weakref.finalize(self, _stop_all, self._readers)
        header = first.header
        per_epoch = header.batches_per_epoch
        self._readers.append(_Reader(https, first, headers, max(1, prefetch), retry))
        for offset in range(1, replicas):
            position = following(start, per_epoch, offset)
            if header.spec.epochs is not None and position[0] >= header.spec.epochs:
                break  # a short finite stream: this part would be empty
            connection = _connect(
                _rotated(https, offset),
                header.spec.with_start(*position, stride=replicas),
                headers,
                retry,
            )
            _check_same_stream(header, connection)
            self._readers.append(
                _Reader(_rotated(https, offset), connection, headers, max(1, prefetch), retry)
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
        if item is _END or item is _CLOSED or isinstance(item, BaseException):
            # Final states stay in the queue, so every consumer thread sees them.
            with contextlib.suppress(queue.Full):
                reader.queue.put_nowait(item)
        if item is _CLOSED:
            raise StreamClosedError("the stream is closed")
        if item is _END:
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
