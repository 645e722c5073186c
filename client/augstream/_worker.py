"""One replica's part of a stream: a thread that asks the schedule for a grant, streams that
range of batches from its replica and hands each batch to the schedule, until the stream is
over or the replica is not to be used any more.

A broken connection, bytes that are not frames, a busy answer or a go-away frame hand the
grant's unfinished batches back (another replica, or this one after a pause, makes them);
a replica whose stream differs (its data, or its numerics) is left out; a failure the server
reports in the stream (an unreadable image) ends the stream for the consumer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from augstream_protocol.info import StreamHeader
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import INPUT_WAIT_HEADER, FrameKind, decode_batch

from ._connection import (
    RETRYABLE,
    Connection,
    GoAwayError,
    NumericsDifferError,
    RetryPolicy,
    check_same_stream,
    server_error,
)
from ._discovery import Endpoint
from ._exceptions import (
    IncompatibleStreamError,
    NotFoundError,
    ProtocolError,
    ServerError,
    TruncatedError,
)
from ._recovery import Recovery
from ._schedule import Grant, Schedule

__all__ = ["Shared", "Waits", "Worker", "describe"]


class Waits:
    """How long the consumer waited for batches, and how many it took, not yet told to a
    server: each new connection tells its replica (a request header), and the fleet's
    thread tells one when no connection has for a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waited = 0.0
        self._taken = 0
        self.told_at = time.monotonic()

    def add(self, waited: float) -> None:
        """The consumer took a batch after waiting ``waited`` seconds for it."""
        with self._lock:
            self._waited += waited
            self._taken += 1

    def take(self) -> tuple[float, int] | None:
        """What is left to tell (then nothing is), or None."""
        with self._lock:
            if not self._taken:
                return None
            pending = (self._waited, self._taken)
            self._waited, self._taken = 0.0, 0
            self.told_at = time.monotonic()
            return pending

    def give_back(self, pending: tuple[float, int] | None) -> None:
        """``pending`` did not reach a server: tell it next time."""
        if pending is not None:
            with self._lock:
                self._waited += pending[0]
                self._taken += pending[1]


@dataclass
class Shared:
    """What every worker of one stream reads: the schedule, the stream's first header (the
    reference every other connection must match), and how to ask for a range."""

    schedule: Schedule
    header: StreamHeader
    headers: dict[str, str]
    retry: RetryPolicy
    stop: threading.Event
    #: Told of each failure (to re-resolve the replicas' names at once), and of a replica
    #: to leave out for good (with the reason).
    on_failure: Callable[[Endpoint, BaseException], None]
    on_exclude: Callable[[Endpoint, str], None]
    waits: Waits
    #: Tells each recovery once (``_recovery``).
    recovery: Recovery

    @property
    def per_epoch(self) -> int:
        return self.header.batches_per_epoch

    def range_spec(self, grant: Grant) -> StreamSpec:
        """The spec that asks a replica for ``grant``'s positions."""
        epoch, batch = divmod(grant.next, self.per_epoch)
        count = None if grant.stop is None else grant.stop - grant.next
        return self.header.spec.with_range(epoch, batch, count)


class Worker:
    """The thread reading one replica's grants."""

    def __init__(
        self,
        ident: int,
        endpoint: Endpoint,
        http: httpx.Client,
        shared: Shared,
        first: tuple[Grant, Connection] | None = None,
        failures: int = 0,
    ) -> None:
        self.ident = ident
        self.endpoint = endpoint
        self._http = http
        self._shared = shared
        #: Set to finish the current grant and take no other (the replica is leaving).
        self.retiring = threading.Event()
        #: Failures in a row (a batch delivered resets it), counted on from earlier workers
        #: of the same replica.
        self.failures = failures
        self.reconnects = 0
        #: The grants held, in reading order, with their connections once opened.
        self._held: deque[tuple[Grant, Connection | None]] = deque([first] if first else [])
        self._lock = threading.Lock()
        shared.schedule.join(ident)
        self._thread = threading.Thread(
            target=self._run, name=f"augstream-replica-{ident}", daemon=True
        )
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Wake reads blocked on this worker's connections (the stream is closing)."""
        with self._lock:
            connections = [c for _, c in self._held if c is not None]
        for connection in connections:
            connection.interrupt()

    def join(self, timeout: float) -> None:
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        shared = self._shared
        schedule = shared.schedule
        try:
            while not shared.stop.is_set():
                if not self._hold():
                    return
                grant = self._held[0][0]
                try:
                    connection = self._open_held()
                    check_same_stream(shared.header, connection)
                    self._pump(connection, grant)
                    self._release_first()
                except RETRYABLE as exc:
                    owed = grant.next  # the first batch this replica still owed
                    self._fail_held()
                    if not self._pause(exc, owed):
                        return
                    continue
                except NumericsDifferError as exc:
                    self._fail_held()
                    shared.on_exclude(self.endpoint, str(exc))
                    return
                except NotFoundError as exc:
                    # A replica without the dataset or the uploaded arrays serves other
                    # data: the stream goes on without it.
                    self._fail_held()
                    shared.on_exclude(self.endpoint, f"it lacks what the stream reads ({exc})")
                    return
                except (IncompatibleStreamError, ServerError) as exc:
                    self._fail_held()
                    schedule.fatal(exc)
                    return
        except Exception as exc:  # surfaced to the consumer rather than lost in a thread
            schedule.fatal(exc)
        finally:
            self._fail_held()
            schedule.leave(self.ident)

    # -- the grants held: the one read, and the next, whose server works meanwhile ------

    def _hold(self) -> bool:
        """Hold a grant to read (waiting for one), and a second if there is one; False when
        there is nothing more for this worker."""
        schedule = self._shared.schedule
        retiring = self.retiring.is_set()
        if not self._held:
            grant = schedule.take(self.ident, wait=0.0 if retiring else None)
            if grant is None:
                return False
            with self._lock:
                self._held.append((grant, None))
        if len(self._held) < 2 and not retiring and self._held[0][0].stop is not None:
            second = schedule.take(self.ident, wait=0.0, second=True)
            if second is not None:
                with self._lock:
                    self._held.append((second, None))
        return True

    def _open_held(self) -> Connection:
        """Open the connections of the grants held that have none; the first one's."""
        for index, (grant, connection) in enumerate(self._held):
            if connection is None:
                opened = self._connect(grant)
                with self._lock:
                    self._held[index] = (grant, opened)
        first = self._held[0][1]
        assert first is not None
        return first

    def _connect(self, grant: Grant) -> Connection:
        shared = self._shared
        pending = shared.waits.take()
        headers = shared.headers
        if pending is not None:
            headers = {**headers, INPUT_WAIT_HEADER: f"{pending[0]:.6f};{pending[1]}"}
        try:
            connection = Connection(
                self._http, shared.range_spec(grant), headers, self.endpoint.extensions
            )
        except BaseException:
            shared.waits.give_back(pending)
            raise
        if self.failures:
            self.reconnects += 1
        return connection

    def _release_first(self) -> None:
        """The first grant is read: close its connection, hand back what it did not give."""
        with self._lock:
            grant, connection = self._held.popleft()
        if connection is not None:
            connection.close()
        self._shared.schedule.fail(grant)  # a no-op when it was read to its end

    def _fail_held(self) -> None:
        """Close every held connection; their grants' unfinished positions go back."""
        with self._lock:
            held, self._held = list(self._held), deque()
        for grant, connection in held:
            if connection is not None:
                connection.close()
            self._shared.schedule.fail(grant)

    def _pause(self, cause: BaseException, owed: int) -> bool:
        """After a failure (``owed``: the first batch not delivered): False when this
        replica is given up; else wait and go on."""
        shared = self._shared
        if shared.stop.is_set():
            return False  # the stream is closing: its connections were cut on purpose
        self.failures += 1
        shared.recovery.failed(str(self.endpoint), describe(cause), owed)
        shared.on_failure(self.endpoint, cause)
        if isinstance(cause, GoAwayError):
            # Not a failure of the replica: it is stopping. Its grants go to the others;
            # if it comes back (a restart), the name's next resolution brings it back.
            return False
        if self.failures > shared.retry.attempts:
            shared.recovery.gave_up(str(self.endpoint))
            return False
        return not shared.stop.wait(shared.retry.delay(self.failures, cause))

    def _pump(self, connection: Connection, grant: Grant) -> bool:
        schedule = self._shared.schedule
        recovery = self._shared.recovery
        per_epoch = self._shared.per_epoch
        delivered = False
        for frame in connection.frames:
            if self._shared.stop.is_set():
                return delivered
            if frame.kind == FrameKind.BATCH:
                batch = decode_batch(frame.body)
                position = batch.epoch * per_epoch + batch.batch
                if position != grant.next:
                    raise ProtocolError(
                        f"expected batch {grant.next % per_epoch} of epoch "
                        f"{grant.next // per_epoch}, received batch {batch.batch} of "
                        f"epoch {batch.epoch}"
                    )
                self.failures = 0
                delivered = True
                more = schedule.deliver(grant, position, batch)
                if recovery.active:
                    recovery.delivered(str(self.endpoint), position)
                if not more:
                    return delivered
            elif frame.kind == FrameKind.END:
                return delivered
            elif frame.kind == FrameKind.ERROR:
                raise server_error(frame)
            elif frame.kind == FrameKind.GOAWAY:
                raise GoAwayError(frame.json().get("reason", "the server is going away"))
            elif frame.kind == FrameKind.HEADER:
                raise ProtocolError("a second header frame arrived mid-stream")
        raise TruncatedError("the stream ended without an end frame")


def describe(cause: Any) -> str:
    """A failure in a few words, for one log line."""
    text = str(cause) or type(cause).__name__
    return text if len(text) <= 200 else text[:197] + "..."
