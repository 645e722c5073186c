"""Identical streams share their batches: each is made once, whoever asks for it.

A batch is a pure function of (spec, epoch, batch), so streams whose specs agree on every
field that shapes the bytes (not on where a request sits in the stream: ``start``,
``stride``, ``batches``, ``epochs``), over the same listing of the dataset, with the same
numerics and frame kind (compact or float), send the same bytes: a sweep of trainers on one
data spec and seed, or every trainer's validation stream. ``SharedBatches`` keeps the
batches they make in a ``FlightCache`` under the stream's identity and position; a batch one
stream is making is waited for by the others, not made again, and each stream waits only for
the batches it asked for, so a slow reader never holds back a fast one.

A stream that draws nothing per epoch (no random operation, no mixup or cutmix, no shuffle)
makes the same batches every epoch: its identity leaves the epoch (and the seed) out, and a
batch is encoded again only to name another epoch in its frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

from .augment.sample import is_off
from .batchcache import Budget, FlightCache, Found, relay
from .catalog import Catalog, UnknownDatasetError
from .numerics import fingerprint
from .pipeline import EncodedBatch, ProducedBatch, StreamPlan
from .shm import shm_has_room

__all__ = [
    "PLACEMENT",
    "BatchSource",
    "SharedBatches",
    "StreamIdentity",
    "epochs_alike",
    "listing_generation",
    "stream_identity",
]

#: Spec fields that only place a request in its stream: the same batches, whatever they are.
PLACEMENT = frozenset({"start", "stride", "batches", "epochs"})

#: ``(epoch, batch) -> that batch as frame parts, being made (on the pool) or made``.
BatchSource = Callable[[int, int], "Future[EncodedBatch]"]


def _ignore(dataset: str, nbytes: int) -> None:
    return None


@dataclass(frozen=True)
class StreamIdentity:
    """What two streams with the same batches share: a digest of everything that shapes
    their bytes, and whether their batches are the same in every epoch."""

    digest: str
    epochs_alike: bool

    def key(self, epoch: int, batch: int) -> tuple[str, int | None, int]:
        """The cache key of one position (one per batch for epoch-alike streams)."""
        return self.digest, None if self.epochs_alike else epoch, batch


def epochs_alike(spec: StreamSpec) -> bool:
    """Whether every epoch of ``spec`` is the same batches: it shuffles nothing, draws no
    transform (``augment.sample.is_off``) and mixes no samples (mixup and cutmix draw per
    epoch); the seed then shapes nothing either."""
    return not spec.shuffle and is_off(spec) and not (spec.mixup_alpha or spec.cutmix_alpha)


def listing_generation(catalog: Catalog, spec: StreamSpec) -> int | None:
    """The generation of the listing ``spec`` reads (0 for uploaded images, which are named
    by their digest); None for a dataset the catalog does not have."""
    if spec.dataset is None:
        return 0
    try:
        return catalog.get(spec.dataset).generation
    except UnknownDatasetError:
        return None


def stream_identity(
    plan: StreamPlan, before: int | None, after: int | None
) -> StreamIdentity | None:
    """The identity of ``plan``'s stream, given its dataset's listing generation before and
    after the plan was made; None (not shared) when the dataset was listed again meanwhile,
    since the plan may then hold either listing (a first listing leaves no doubt)."""
    if before is None or after not in (before, 1 if before == 0 else before):
        return None
    spec = plan.spec
    alike = epochs_alike(spec)
    fields = spec.model_dump(mode="json", exclude=set(PLACEMENT) | ({"seed"} if alike else set()))
    shaped = {
        "spec": fields,
        "generation": after,
        "numerics": fingerprint()["digest"],
        "compact": plan.compact,
    }
    blob = json.dumps(shaped, sort_keys=True, separators=(",", ":")).encode()
    return StreamIdentity(hashlib.sha256(blob).hexdigest(), alike)


@dataclass(frozen=True)
class _Made:
    """A batch as made: its arrays (read-only), and its frame parts for the epoch it was
    made in (they reference the arrays)."""

    produced: ProducedBatch
    encoded: EncodedBatch


def _owned(array: np.ndarray[Any, Any], borrow: Callable[[int], bool]) -> np.ndarray[Any, Any]:
    """``array`` to keep in the cache: as it is when numpy owns its memory; one that views a
    buffer (a worker process's shared-memory block, which returns to its pool only when no
    array views it) as it is while ``borrow(nbytes)`` says there is room to keep the block,
    else a copy (kept blocks would fill a container's small /dev/shm)."""
    base: object = array
    while isinstance(base, np.ndarray) and not base.flags.owndata:
        base = base.base
    if isinstance(base, np.ndarray) or borrow(array.nbytes):
        return np.ascontiguousarray(array)
    return array.copy()


def _make(
    plan: StreamPlan, borrow: Callable[[int], bool], epoch: int, batch: int
) -> tuple[_Made, int]:
    produced = plan.produce_batch(epoch, batch, compact=plan.compact)
    arrays = {name: _owned(array, borrow) for name, array in produced.arrays.items()}
    for array in arrays.values():
        # Several streams may send views of it at once, long after it left the cache.
        array.flags.writeable = False
    produced = dataclasses.replace(produced, arrays=arrays)
    encoded = plan.encode(produced)
    # The frame's large parts are views of the arrays: count the arrays and the copies.
    copies = sum(len(part) for part in encoded.parts if isinstance(part, bytes))
    return _Made(produced, encoded), sum(a.nbytes for a in arrays.values()) + copies


class SharedBatches:
    """The server's finished batches, by stream identity and position, in bytes drawn from
    ``budget``; ``on_shared(dataset, nbytes)`` hears of each batch a stream got without
    making it (held, or made for another stream that asked first). A batch a worker process
    made in shared memory is kept there while ``borrow(nbytes)`` allows, else copied out."""

    def __init__(
        self,
        budget: Budget,
        on_shared: Callable[[str, int], None] = _ignore,
        borrow: Callable[[int], bool] = shm_has_room,
    ) -> None:
        self.cache: FlightCache[_Made] = FlightCache(budget)
        self._on_shared = on_shared
        self._borrow = borrow

    def source(
        self, plan: StreamPlan, identity: StreamIdentity | None, executor: Executor
    ) -> BatchSource | None:
        """Where ``plan``'s stream gets its batches through the cache; None (no identity, or
        a cache of size 0): it makes its own."""
        if identity is None or not self.cache.budget.capacity:
            return None

        def fetch(epoch: int, batch: int) -> Future[EncodedBatch]:
            made, found = self.cache.fetch(
                identity.key(epoch, batch),
                partial(_make, plan, self._borrow, epoch, batch),
                executor,
            )
            if found is Found.HELD and made.result().produced.epoch != epoch:
                # Encoding names the epoch: on the pool, not in the event loop.
                return executor.submit(self._deliver, plan, epoch, True, made.result())
            out: Future[EncodedBatch] = Future()
            deliver = partial(self._deliver, plan, epoch, found is not Found.MADE)
            relay(made, out, deliver, made.cancel)  # a stream that leaves, leaves the flight
            return out

        return fetch

    def figures(self) -> dict[str, int]:
        """The cache's figures: batches held, joined and made, evictions, entries, bytes."""
        return self.cache.figures()

    def _deliver(self, plan: StreamPlan, epoch: int, shared: bool, made: _Made) -> EncodedBatch:
        encoded = made.encoded
        if made.produced.epoch != epoch:
            encoded = plan.encode(dataclasses.replace(made.produced, epoch=epoch))
        if shared:
            self._on_shared(plan.source.name, encoded.nbytes)
        return encoded
