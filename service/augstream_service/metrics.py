"""What the server has done, for Prometheus (``/metrics``) and for people (``/v1/status``).

Each app has its own registry, so two apps in one process (tests, embedding) never mix
their figures. Counters are bumped from the worker threads and the event loop alike;
prometheus-client's metrics are thread-safe, and the live-stream board takes a lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

__all__ = ["STAGES", "LiveStream", "Metrics"]

#: The stages a batch goes through, each timed per batch.
STAGES = ("read", "decode", "augment", "encode")
#: Seconds over which a live stream's rates are computed.
RATE_WINDOW_S = 10.0
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class LiveStream:
    """One stream being sent: what it reads, who reads it, and how fast."""

    id: int
    dataset: str
    client: str
    owner: str
    started: float = field(default_factory=time.monotonic)
    batches: int = 0
    images: int = 0
    bytes: int = 0
    #: (time, bytes) of each batch sent within the rate window.
    _recent: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    def sent(self, images: int, nbytes: int, now: float) -> None:
        self.batches += 1
        self.images += images
        self.bytes += nbytes
        self._recent.append((now, nbytes))
        self._forget(now)

    def as_dict(self, now: float) -> dict[str, Any]:
        self._forget(now)
        # Over the window, or since the start for a younger stream; 0 once it stalls.
        span = max(min(RATE_WINDOW_S, now - self.started), 1e-3)
        return {
            "id": self.id,
            "dataset": self.dataset,
            "client": self.client,
            "owner": self.owner,
            "seconds": round(now - self.started, 1),
            "batches": self.batches,
            "images": self.images,
            "bytes": self.bytes,
            "batches_per_s": round(len(self._recent) / span, 2),
            "bytes_per_s": round(sum(nbytes for _, nbytes in self._recent) / span),
        }

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
            self._recent.popleft()


class Metrics:
    """The server's counters, stage timings and live streams."""

    def __init__(self, active_streams: Callable[[], int], caches: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry()
        registry = self.registry
        self.images = Counter(
            "augstream_images", "Images put into batches", ["dataset"], registry=registry
        )
        self.batches = Counter(
            "augstream_batches", "Batches sent to clients", ["dataset"], registry=registry
        )
        self.sent_bytes = Counter(
            "augstream_sent_bytes", "Bytes of batch frames sent", ["dataset"], registry=registry
        )
        self.streams = Counter(
            "augstream_streams", "Streams started", ["dataset"], registry=registry
        )
        self.errors = Counter(
            "augstream_errors",
            "Errors by kind: refused requests, failed streams, samples that could not be read",
            ["kind"],
            registry=registry,
        )
        self.skipped = Counter(
            "augstream_skipped_samples",
            "Samples left out of batches (unreadable, under an on_corrupt=skip policy)",
            ["dataset"],
            registry=registry,
        )
        self.input_wait = Counter(
            "augstream_input_wait_seconds",
            "Seconds trainers waited for batches, as their clients report (autoscaling's "
            "signal: its rate is trainer-seconds of waiting per second)",
            ["dataset"],
            registry=registry,
        )
        self.input_batches = Counter(
            "augstream_input_batches",
            "Batches trainers took, as their clients report (with the waiting above)",
            ["dataset"],
            registry=registry,
        )
        self.shared_batches = Counter(
            "augstream_shared_batches",
            "Batches sent without being made for their stream: held by the batch cache, or "
            "being made for an identical stream that asked first",
            ["dataset"],
            registry=registry,
        )
        self.shared_bytes = Counter(
            "augstream_shared_bytes",
            "Bytes of the shared batches' frames: the work not done again, in bytes sent",
            ["dataset"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "augstream_stage_seconds",
            "Seconds one batch spent in each stage (read: store; decode; augment; encode)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        Gauge("augstream_active_streams", "Streams being sent now", registry=registry).set_function(
            lambda: float(active_streams())
        )
        registry.register(_CacheCollector(caches))
        self._caches = caches
        #: The batch cache's figures (``shared.SharedBatches.figures``), once there is one.
        self.batch_cache: Callable[[], dict[str, int]] | None = None
        registry.register(_BatchCacheCollector(lambda: self.batch_cache))
        self.started = time.time()
        self._live: dict[int, LiveStream] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        #: Each metric's child by label value: ``labels()`` checks and locks (~2 µs), and a
        #: batch counts about nine figures.
        self._children: dict[tuple[MetricWrapperBase, str], Any] = {}

    def _child(self, metric: MetricWrapperBase, value: str) -> Any:
        child = self._children.get((metric, value))
        if child is None:  # two threads may both ask: labels() gives both the same child
            child = self._children[metric, value] = metric.labels(value)
        return child

    def observe(self, stage: str, seconds: float) -> None:
        """Record ``seconds`` of one batch's ``stage`` (called from the worker threads)."""
        self._child(self.stage_seconds, stage).observe(seconds)

    def error(self, kind: str, count: int = 1) -> None:
        """Count ``count`` errors of ``kind``."""
        self._child(self.errors, kind).inc(count)

    def waited(self, dataset: str, seconds: float, batches: int) -> None:
        """A client's report: its trainer waited ``seconds`` for ``batches`` batches."""
        self.input_wait.labels(dataset).inc(seconds)
        self.input_batches.labels(dataset).inc(batches)

    def waits(self) -> dict[str, float]:
        """Seconds trainers waited so far, by dataset."""
        return {
            sample.labels["dataset"]: round(sample.value, 3)
            for metric in self.input_wait.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    def shared(self, dataset: str, nbytes: int) -> None:
        """A stream of ``dataset`` got a batch of ``nbytes`` it did not have to make."""
        self._child(self.shared_batches, dataset).inc()
        self._child(self.shared_bytes, dataset).inc(nbytes)

    def sharing(self) -> dict[str, Any]:
        """Batches shared and bytes saved, in all and by dataset, and the batch cache."""
        batches = _by_label(self.shared_batches, "dataset")
        saved = _by_label(self.shared_bytes, "dataset")
        return {
            "batches": sum(batches.values()),
            "bytes": sum(saved.values()),
            "by_dataset": {
                name: {"batches": count, "bytes": saved.get(name, 0)}
                for name, count in batches.items()
            },
            "cache": None if self.batch_cache is None else self.batch_cache(),
        }

    def skip(self, dataset: str, count: int) -> None:
        """Count samples of ``dataset`` left out of a batch."""
        self._child(self.skipped, dataset).inc(count)

    def skipped_counts(self) -> dict[str, int]:
        """Samples left out so far, by dataset."""
        return _by_label(self.skipped, "dataset")

    def stream_started(self, dataset: str, client: str, owner: str) -> LiveStream:
        """A new stream, shown on the board until ``stream_ended``."""
        self.streams.labels(dataset).inc()
        live = LiveStream(next(self._ids), dataset, client, owner)
        with self._lock:
            self._live[live.id] = live
        return live

    def batch_sent(self, live: LiveStream, images: int, nbytes: int) -> None:
        """One more batch of ``live`` is on its way to the client."""
        self._child(self.images, live.dataset).inc(images)
        self._child(self.batches, live.dataset).inc()
        self._child(self.sent_bytes, live.dataset).inc(nbytes)
        with self._lock:
            live.sent(images, nbytes, time.monotonic())

    def stream_ended(self, live: LiveStream) -> None:
        with self._lock:
            self._live.pop(live.id, None)

    def live_streams(self) -> list[dict[str, Any]]:
        """The streams being sent now, oldest first."""
        now = time.monotonic()
        with self._lock:
            return [live.as_dict(now) for live in self._live.values()]

    def status(self) -> dict[str, Any]:
        """Everything a person watching the server wants at a glance (``/v1/status``)."""
        caches = self._caches()
        for cache in ("bytes", "images"):
            figures = caches[cache]
            lookups = figures["hits"] + figures["misses"]
            figures["hit_rate"] = round(figures["hits"] / lookups, 3) if lookups else None
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "streams": self.live_streams(),
            "totals": {
                name: sum(_by_label(counter, "dataset").values())
                for name, counter in (
                    ("streams", self.streams),
                    ("batches", self.batches),
                    ("images", self.images),
                    ("bytes", self.sent_bytes),
                )
            },
            "caches": caches,
            "shared": self.sharing(),
            "errors": self.error_counts(),
            "skipped_samples": self.skipped_counts(),
            "input_wait_s": self.waits(),
        }

    def error_counts(self) -> dict[str, int]:
        """Errors so far, by kind."""
        return _by_label(self.errors, "kind")


def _by_label(counter: Counter, label: str) -> dict[str, int]:
    return {
        sample.labels[label]: int(sample.value)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


class _CacheCollector(Collector):
    """The shared caches' figures, read when scraped (they keep their own counters)."""

    def __init__(self, caches: Callable[[], dict[str, Any]]) -> None:
        self._caches = caches

    def collect(self) -> Iterator[Metric]:
        figures = self._caches()
        decodes = CounterMetricFamily("augstream_decodes", "Images decoded")
        decodes.add_metric([], figures["decodes"])
        reads = CounterMetricFamily("augstream_store_reads", "Files read from dataset stores")
        reads.add_metric([], figures["store_reads"])
        lookups = CounterMetricFamily(
            "augstream_cache_lookups",
            "Cache lookups by cache and result",
            labels=["cache", "result"],
        )
        held = GaugeMetricFamily("augstream_cache_bytes", "Bytes held", labels=["cache"])
        for cache in ("bytes", "images"):
            cached = figures[cache]
            lookups.add_metric([cache, "hit"], cached["hits"])
            lookups.add_metric([cache, "miss"], cached["misses"])
            held.add_metric([cache], cached["bytes"])
        yield from (decodes, reads, lookups, held)


class _BatchCacheCollector(Collector):
    """The batch cache's figures, read when scraped."""

    def __init__(self, figures: Callable[[], Callable[[], dict[str, int]] | None]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        if figures is None:
            return
        cached = figures()
        lookups = CounterMetricFamily(
            "augstream_batch_cache_lookups",
            "Batches asked of the batch cache, by result: held, joined (being made for "
            "another stream) or made",
            labels=["result"],
        )
        for result in ("held", "joined", "made"):
            lookups.add_metric([result], cached[result])
        held = GaugeMetricFamily("augstream_batch_cache_bytes", "Bytes of batches held")
        held.add_metric([], cached["bytes"])
        yield from (lookups, held)
