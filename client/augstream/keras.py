"""Keras adapters: a ``PyDataset`` over a stream, and a callback that shows input stalls.

Importing this module imports Keras; ``import augstream`` alone does not.

Keras asks a ``PyDataset`` for batch indices in its own (shuffled) order, from several
threads with ``workers > 1``. ``StreamDataset`` hands out the stream's batches in stream
order instead: the n-th distinct index Keras asks for in an epoch gets the stream's n-th
batch of that epoch, and asking again for an index gives the same batch. So each epoch Keras
runs sees one whole epoch of the stream exactly once, in the stream's (seeded, reproducible)
order, and Keras' own shuffling costs nothing. Batches are a pure function of their
position, so one that fell out of the small cache is fetched again by reopening the stream.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from augstream_protocol.info import StreamHeader
from augstream_protocol.spec import StreamSpec

from ._distribution import front_shard
from ._invalid import spec_from
from ._recovery import TALLY, told
from .client import Client
from .stream import Batch, Stream

__all__ = ["InputStallMonitor", "RemoteIterator", "StreamDataset"]

# How far ahead of the current stream position a request may be before reopening is cheaper
# than reading forward.
_READ_AHEAD = 64


def _distance(stream: Stream, target: tuple[int, int]) -> int:
    """Batches to read from ``stream`` before it delivers ``target`` (negative: passed)."""
    per_epoch = len(stream)
    (epoch, batch), (want_epoch, want_batch) = stream.position, target
    return (want_epoch - epoch) * per_epoch + want_batch - batch


class StreamDataset(keras.utils.PyDataset):  # type: ignore[misc]
    """A Keras ``PyDataset`` whose batches come from an augstream server.

    Give a client (or a URL) and a spec, or its fields as keywords; ``workers``,
    ``use_multiprocessing`` and ``max_queue_size`` are ``PyDataset``'s own. The connection is
    opened lazily, so the dataset can be pickled for multiprocessing.
    """

    def __init__(
        self,
        client: Client | str | None = None,
        spec: StreamSpec | None = None,
        *,
        api_key: str | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        **fields: Any,
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        self._url: str | None = client.url if isinstance(client, Client) else client
        # A given client (its timeout and retry policy) is used as is; copies sent to worker
        # processes build their own from the URL.
        self._given: Client | None = client if isinstance(client, Client) else None
        self._api_key = api_key
        merged = {**(spec.model_dump(exclude_unset=True) if spec else {}), **fields}
        if "shard" not in merged:
            # One of several data-parallel workers, by the framework's environment.
            merged.update({} if (shard := front_shard(None)) is None else {"shard": shard})
        resolved = spec_from(merged)
        if resolved.epochs is not None:
            raise ValueError("a StreamDataset is endless: leave epochs unset")
        if resolved.seed is None:
            resolved = resolved.with_seed(secrets.randbelow(2**31))
        self.spec = resolved
        self._epoch = resolved.start.epoch
        self._cache_size = max(8, 2 * (workers + max_queue_size))
        # Worker processes cannot share the index assignment, so there index i is batch i.
        self._in_stream_order = not use_multiprocessing
        self._reset_connection()

    def _reset_connection(self) -> None:
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._stream: Stream | None = None
        self._header: StreamHeader | None = None
        self._assigned: dict[int, int] = {}  # Keras index -> stream batch of this epoch
        self._cache: OrderedDict[tuple[int, int], Batch] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_lock", "_client", "_stream", "_cache", "_assigned", "_given"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._given = None
        self._reset_connection()

    def _connected(self) -> Client:
        if self._client is None:
            self._client = self._given or Client(self._url, api_key=self._api_key)
        return self._client

    def _open(self, epoch: int, index: int) -> Stream:
        client = self._connected()
        if self._stream is not None:
            self._stream.close()
        self._stream = client.stream(self.spec.with_start(epoch, index))
        self._header = self._stream.header
        return self._stream

    def _stream_header(self) -> StreamHeader:
        # Cached: Keras asks for len() often, and must not wait behind a batch being read.
        header = self._header
        if header is None:
            with self._lock:
                if self._stream is None:
                    self._open(self._epoch, 0)
                assert self._header is not None
                header = self._header
        return header

    @property
    def num_batches(self) -> int:
        return self._stream_header().batches_per_epoch

    def __len__(self) -> int:
        return self.num_batches

    @property
    def class_indices(self) -> dict[str, int]:
        """Class name -> label index."""
        return dict(self._stream_header().class_indices)

    @property
    def samples(self) -> int:
        """Images per epoch."""
        return self._stream_header().samples

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch`` of the stream (cached, thread-safe)."""
        key = (epoch, index)
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} out of range: an epoch has {self.num_batches}")
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            stream = self._stream
            if stream is None or not 0 <= _distance(stream, key) <= _READ_AHEAD:
                stream = self._open(epoch, index)
            while True:
                batch = told(stream.next_batch)
                self._cache[(batch.epoch, batch.index)] = batch
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
                if (batch.epoch, batch.index) == key:
                    return batch

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range: an epoch has {len(self)} batches")
        with self._lock:
            position = index
            if self._in_stream_order:
                position = self._assigned.setdefault(index, len(self._assigned))
            else:
                self._assigned[index] = index
            epoch = self._epoch
        return self._convert(self.batch(epoch, position))

    def _convert(self, batch: Batch) -> Any:
        return batch.as_keras()

    def on_epoch_end(self) -> None:
        """Keras calls this after each epoch: the next epoch reads the stream's next epoch."""
        with self._lock:
            # Keras also calls this when it resets an iterator; an epoch in which nothing was
            # asked is not over. Worker processes ask in their own copies, so there it is.
            if self._assigned or not self._in_stream_order:
                self._epoch += 1
                self._assigned = {}

    def close(self) -> None:
        """Close the connection (it reopens if the dataset is used again)."""
        with self._lock:
            if self._stream is not None:
                self._stream.close()
            if self._client is not None and self._client is not self._given:
                self._client.close()
            self._stream, self._client = None, None


class InputStallMonitor(keras.callbacks.Callback):  # type: ignore[misc]
    """Reports, per epoch, how long training waited for data, how fast batches arrived, and
    the streams' recoveries (reconnects, failovers, resumes) and the time they took.

    The wait is the larger of the time between the end of one training step and the start
    of the next (the time Keras spent getting the next batch, on backends that fetch
    between steps) and the time augstream's streams kept their readers waiting (TensorFlow
    fetches inside the step, on tf.data's threads), at most the epoch's. A large share
    means the data feed is the bottleneck; a small one means the model (GPU or CPU) is.
    Each epoch's line is printed when the next epoch begins (or training ends), after Keras'
    progress bar has finished its line, never inside it.
    """

    def __init__(self, print_fn: Any = print) -> None:
        super().__init__()
        self._print = print_fn
        self.history: list[dict[str, float]] = []
        self._pending: str | None = None

    def _flush(self) -> None:
        if self._pending is not None:
            self._print(self._pending)
            self._pending = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._flush()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._flush()
        self._recovered = TALLY.read()
        self._epoch_start = time.perf_counter()
        self._last_end: float | None = self._epoch_start
        self._waited = 0.0
        self._batches = 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._last_end is not None:
            self._waited += time.perf_counter() - self._last_end

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last_end = time.perf_counter()
        self._batches += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        elapsed = max(time.perf_counter() - self._epoch_start, 1e-9)
        recoveries, seconds, streams_waited = (
            now - then for now, then in zip(TALLY.read(), self._recovered, strict=True)
        )
        waited = min(elapsed, max(self._waited, streams_waited))
        record = {
            "epoch": float(epoch),
            "seconds": elapsed,
            "input_wait_seconds": waited,
            "input_wait_fraction": waited / elapsed,
            "batches_per_second": self._batches / elapsed,
            "recoveries": float(recoveries),
            "recovery_seconds": seconds,
        }
        self.history.append(record)
        recovered = (
            f"; {recoveries:.0f} reconnect{'s' * (recoveries != 1)} ({seconds:.1f} s)"
            if recoveries
            else ""
        )
        # Printed when the next epoch begins: Keras' progress bar, a callback after this
        # one, finishes the epoch's line only now.
        self._pending = (
            f"augstream: epoch {epoch + 1} waited {waited:.2f} s for data "
            f"({100 * record['input_wait_fraction']:.0f}% of {elapsed:.2f} s), "
            f"{record['batches_per_second']:.1f} batches/s{recovered}"
        )


class RemoteIterator(StreamDataset):
    """What ``ImageDataGenerator``'s ``flow*`` methods return: a ``PyDataset`` for
    ``model.fit`` that is also an endless iterator (``next(it)``), with the attributes of
    Keras' iterators: ``samples`` (and ``n``), ``class_indices``, ``classes``, ``filenames``,
    ``num_classes``, ``batch_size``, ``image_shape``.
    """

    def __init__(
        self,
        client: Client,
        spec: StreamSpec,
        *,
        postprocess: Any = None,
        channels_first: bool = False,
        cast: str | None = None,
    ) -> None:
        super().__init__(client, spec, api_key=client.api_key)
        listing = client.files(spec)
        self.filenames: list[str] = listing.files
        #: For streams over uploaded rows: the upload row of each sample.
        self.rows = listing.rows
        self.classes: Any = np.asarray(listing.labels, dtype=np.int32)
        self.n = len(listing.rows) if listing.rows is not None else len(listing.files)
        self.batch_size = spec.batch_size
        height, width = spec.target_size
        shape = (height, width, spec.channels)
        self.image_shape = (shape[2], height, width) if channels_first else shape
        self.num_classes = len(listing.class_indices)
        self._listing_indices = dict(listing.class_indices)
        self._postprocess = postprocess
        self._channels_first = channels_first
        self._cast = cast
        self._sequential: Stream | None = None

    @property
    def samples(self) -> int:
        """Images per epoch."""
        return self.n

    @property
    def class_indices(self) -> dict[str, int]:
        """Class name -> label index (sorted folder names unless ``classes`` was given)."""
        return dict(self._listing_indices)

    def _convert(self, batch: Batch) -> Any:
        x = batch.x
        if self._postprocess is not None:
            x = self._postprocess(x)
        if self._cast is not None:
            x = x.astype(self._cast, copy=False)
        if self._channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = x if self.spec.class_mode == "input" else batch.y
        if self._channels_first and self.spec.class_mode == "mask" and isinstance(y, np.ndarray):
            y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # masks are images too
        return replace(batch, x=x, y=y).as_keras()

    def __iter__(self) -> RemoteIterator:
        return self

    def __next__(self) -> Any:
        """The next batch of an endless sequential stream (the ``fit_generator`` idiom)."""
        with self._lock:
            if self._sequential is None:
                self._sequential = self._connected().stream(self.spec)
            stream = self._sequential
        return self._convert(told(stream.next_batch))

    def next(self) -> Any:
        """Keras 2 style alias of ``next(iterator)``."""
        return self.__next__()

    def reset(self) -> None:
        """Restart the sequential iterator at the spec's start."""
        with self._lock:
            if self._sequential is not None:
                self._sequential.close()
            self._sequential = None

    def close(self) -> None:
        self.reset()
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_sequential", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._sequential = None
