"""A live stream of batches: an endless (or finite) iterator fed by background threads.

The stream is a sequence of positions ``(epoch, batch)``. Replicas are handed ranges of it
by whichever is ready (``_schedule``), each range read by a thread of its own
(``_worker``), and the batches are put back in order in a bounded buffer: a fast replica
makes more, a slow one less, and one that fails, drains or stalls hands its unfinished
batches to the others. The replicas are the client's URLs, each name resolved to every
address it has and resolved again as the stream goes (``_discovery``, ``_fleet``); replicas
whose numerics differ are never mixed. So every batch arrives exactly once, in order, and
the stream is byte-identical to one server's, whatever happens to the replicas.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from augstream_protocol.info import StreamHeader
from augstream_protocol.numerics import families
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import COMPACT_REQUEST, BatchFrame

from ._connection import RetryPolicy, connect
from ._discovery import Endpoint, Replicas
from ._exceptions import StreamClosedError
from ._expand import EXPANDER
from ._fleet import Fleet, agreeing, fingerprints, window_for
from ._recovery import TALLY
from ._schedule import Schedule

__all__ = ["Batch", "RetryPolicy", "Stream"]

log = logging.getLogger("augstream")

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
    for (here, as the caller takes it, not in the reader: the floats are allocated in the
    caller's thread, where it frees them, which lets the allocator reuse their memory; a
    reader thread's allocations of batches queued ahead come from and go back to the system
    each time, a page fault per 4 KiB. And the queue holds the compact bytes, a quarter of
    the floats. Where the process has cores to spare, a few threads multiply the rows
    (``_expand``).)"""
    arrays = decoded.arrays
    x = EXPANDER(arrays["x"], header.arrays["x"])  # on a few cores where there are some
    spec = header.spec
    y: Array | list[Array] | None = arrays.get("y")
    if spec.class_mode == "input":
        y = x
    elif spec.class_mode == "multi_output":
        y = [arrays[f"y{i}"] for i in range(len(spec.arrays.y if spec.arrays else ()))]
    return Batch(
        decoded.epoch, decoded.batch, decoded.sample_ids, x, y, arrays.get("w"), decoded.skipped
    )


def following(position: tuple[int, int], per_epoch: int, step: int = 1) -> tuple[int, int]:
    """The ``(epoch, batch)`` ``step`` batches after ``position`` in a stream of
    ``per_epoch`` batches per epoch."""
    epoch, batch = divmod(position[0] * per_epoch + position[1] + step, per_epoch)
    return epoch, batch


def _reporter(
    replicas: Replicas, headers: dict[str, str], dataset: str
) -> Callable[[Endpoint, float, int], bool]:
    """Tells a replica how long the consumer waited for ``batches`` batches (the servers'
    ``augstream_input_wait_seconds_total``); quiet with servers that do not know it."""
    state = {"on": True}

    def report(endpoint: Endpoint, waited: float, batches: int) -> bool:
        if not state["on"]:
            return True
        body = {"dataset": dataset, "waited_s": round(waited, 6), "batches": batches}
        try:
            response = replicas.http(endpoint).post(
                "/v1/report", json=body, headers=headers, extensions=endpoint.extensions
            )
        except httpx.HTTPError:
            return False
        if response.status_code in (404, 405):
            state["on"] = False  # a server older than the report
        return response.is_success

    return report


def _never_unfit(_: Endpoint) -> str | None:
    return None


class Stream(Iterator[Any]):
    """An endless (or, with ``epochs``, finite) iterator of ``(x, y)`` NumPy batches.

    ``len(stream)`` is the number of batches per epoch, as Keras expects from its
    iterators; ``next(stream)`` never stops for an endless stream.

    ``http`` is one HTTP client, several (one per replica), or a client's ``Replicas``
    (names resolved to every address, and resolved again every ``resolve_every_s``). Over
    several replicas the stream is spread by dynamic assignment: whichever replica is ready
    takes the next range of batches; the batches are delivered in order, byte-identical to
    one server's, and at most ``prefetch`` per replica (for up to 8 replicas) wait in the
    reorder buffer. ``prepare(endpoint)`` readies a replica that joins mid-stream (it
    uploads what the stream reads) and returns why it cannot take part, or None.
    """

    def __init__(
        self,
        http: httpx.Client | Sequence[httpx.Client] | Replicas,
        spec: StreamSpec,
        *,
        headers: dict[str, str] | None = None,
        prefetch: int = 4,
        retry: RetryPolicy | None = None,
        resolve_every_s: float = 5.0,
        prepare: Callable[[Endpoint], str | None] = _never_unfit,
    ) -> None:
        replicas = (
            http
            if isinstance(http, Replicas)
            else Replicas.fixed([http] if isinstance(http, httpx.Client) else list(http))
        )
        # Compact images are expanded as the caller takes each batch (``_as_batch``).
        headers = {COMPACT_REQUEST[0]: COMPACT_REQUEST[1], **(headers or {})}
        retry = retry or RetryPolicy()
        prefetch = max(1, prefetch)
        endpoints = replicas.endpoints()
        left_out: dict[Endpoint, str] = {}
        wanted = families(spec)
        if len(endpoints) > 1 and wanted:
            endpoints, left_out = agreeing(fingerprints(replicas, endpoints, headers), wanted)
        start = (spec.start.epoch, spec.start.batch)
        window = window_for(prefetch, len(endpoints))
        # Alone, a replica streams to the end; among several, ranges of ``prefetch``.
        count = None if len(endpoints) == 1 else prefetch
        candidates = [(replicas.http(e), e.extensions) for e in endpoints]
        where = [str(e) for e in endpoints]
        index, first = connect(candidates, spec.with_range(*start, count), headers, retry, where)
        header = first.header.model_copy(
            update={"spec": first.header.spec.with_range(*start, None)}
        )
        per_epoch = header.batches_per_epoch
        end = None if header.spec.epochs is None else header.spec.epochs * per_epoch
        schedule = Schedule(start[0] * per_epoch + start[1], end, window, grant_size=prefetch)
        self._schedule = schedule
        self._fleet = fleet = Fleet(
            replicas,
            schedule,
            header,
            headers,
            retry,
            prefetch=prefetch,
            resolve_every_s=resolve_every_s,
            report=_reporter(replicas, headers, header.dataset),
            prepare=prepare,
        )
        for endpoint, reason in left_out.items():
            fleet.exclude(endpoint, reason)
        # A box of several server processes: the fleet takes them in at its first look.
        siblings = replicas.learn(endpoints[index], header.sibling_ports)
        others = [e for e in endpoints if e != endpoints[index]]
        fleet.start(endpoints[index], first, count, others, resolve=siblings)
        # Stopped even when the stream is dropped without close().
        self._finalizer = weakref.finalize(self, fleet.stop)
        self._header = header
        self._failed: BaseException | None = None
        self._done = False
        self._closed = False
        self._position = start
        self._lock = threading.Lock()

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
        return self._fleet.reconnects

    @property
    def replicas(self) -> dict[str, int]:
        """The replicas read so far (by address) and how many of this stream's batches each
        made."""
        return self._fleet.workers()

    @property
    def left_out(self) -> dict[str, str]:
        """Replicas left out of this stream, with the reason (differing numerics, other
        data)."""
        return {endpoint.address: reason for endpoint, reason in self._fleet.excluded.items()}

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
        started = time.perf_counter()
        try:
            item: BatchFrame = self._schedule.take_batch(timeout)
        except StopIteration:
            if self._closed:
                raise StreamClosedError("the stream is closed") from None
            self._done = True
            raise
        except TimeoutError:
            raise
        except BaseException as exc:
            self._failed = exc
            raise
        waited = time.perf_counter() - started
        self._fleet.consumed(waited)
        TALLY.wait(waited)
        batch = _as_batch(item, self._header)
        with self._lock:
            self._position = following((batch.epoch, batch.index), len(self))
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
