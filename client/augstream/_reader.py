"""The background half of a stream: a thread that reads one connection's batches into a
bounded queue, in order, and reconnects at the next batch it has not delivered when the
connection breaks, the body stops inside a frame, or a frame fails its checksum.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from augstream_protocol.wire import BatchFrame, Frame, FrameKind, decode_batch

from ._connection import (
    RETRYABLE,
    Connection,
    GoAwayError,
    RetryPolicy,
    check_same_stream,
    server_error,
)
from ._exceptions import ConnectionLostError, ProtocolError, TruncatedError

__all__ = ["CLOSED", "END", "Reader", "following", "rotated"]


def following(position: tuple[int, int], per_epoch: int, step: int = 1) -> tuple[int, int]:
    """The ``(epoch, batch)`` ``step`` batches after ``position`` in a stream of
    ``per_epoch`` batches per epoch."""
    epoch, batch = divmod(position[0] * per_epoch + position[1] + step, per_epoch)
    return epoch, batch


def rotated(https: Sequence[httpx.Client], first: int) -> list[httpx.Client]:
    """The replicas in the order one sub-stream tries them: its own, then the next ones."""
    return [*https[first:], *https[:first]]


END = object()
CLOSED = object()


class Reader:
    """The background half of a stream. Holds no reference to the ``Stream`` object, so a
    stream that is dropped without ``close()`` is still collected and its reader stopped."""

    def __init__(
        self,
        https: list[httpx.Client],
        connection: Connection,
        headers: dict[str, str],
        prefetch: int,
        retry: RetryPolicy,
    ) -> None:
        #: Its own replica first; a reconnect tries the next one (a dead replica's batches
        #: move to the others).
        self._https = https
        self._headers = headers
        self._connection: Connection | None = connection
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

    def _pump(self, connection: Connection) -> bool:
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
                self._put(END)
                return True
            elif frame.kind == FrameKind.ERROR:
                self._put(server_error(frame))
                return True
            elif frame.kind == FrameKind.GOAWAY:
                # Not a failure: the retry budget starts afresh for the hand-over.
                self._failures = 0
                raise GoAwayError(frame.json().get("reason", "the server is going away"))
            elif frame.kind == FrameKind.HEADER:
                raise ProtocolError("a second header frame arrived mid-stream")
        raise TruncatedError("the stream ended without an end frame")

    def _reconnect(self, cause: BaseException) -> Connection | None:
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
                connection = Connection(http, spec, self._headers)
            except RETRYABLE as exc:
                cause = exc
                continue
            check_same_stream(self.header, connection)
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
                except RETRYABLE as exc:
                    cause: BaseException = exc
                finally:
                    connection.close()
                with self._lock:
                    if self._stop.is_set():
                        return
                epochs = self.header.spec.epochs
                if epochs is not None and self._next[0] >= epochs:
                    # Every batch arrived; only the end frame was lost.
                    self._put(END)
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
            self.queue.put_nowait(CLOSED)
