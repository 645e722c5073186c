"""Dataset statistics as a service: Keras' ``fit`` on the server, and the statistics a
stream applies.

A fit is a pure function of what it reads and its request, so its result is kept under a
key made of exactly those (the dataset's listing generation, the fields that change the
pixels, the fit options). The arrays are stored in the upload store, named by their digest
like uploads: a stream names them in ``stats``, any replica can be sent them, and they
outlive a restart. Concurrent requests for the same fit compute it once.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec
from augstream_protocol.stats import StatsRequest

from . import sampling
from .augment import IDENTITY, apply, sample
from .caches import Flight
from .catalog import Catalog
from .costs import fit_cost
from .limits import Limits
from .reader import ImageReader
from .resolve import resolve_samples
from .samples import PlanError, SampleError, Samples
from .scheduler import AbandonedError, checkpoint
from .stats import Moments, Statistics, fit_statistics
from .uploads import UnknownArrayError, UploadStore

__all__ = ["StatsBook", "fit_spec", "load_statistics"]

Array = np.ndarray[Any, Any]

# What picks the sample and how its pixels are made without augmentation; with it, every
# field but these stream-only ones (and the standardisation that fit does not apply).
_SELECTION = (
    "dataset",
    "arrays",
    "classes",
    "class_mode",
    "validation_split",
    "subset",
    "target_size",
    "color_mode",
    "interpolation",
    "keep_aspect_ratio",
    "rescale",
)
_STREAM_ONLY = (
    "batch_size", "shuffle", "seed", "start", "stride", "batches", "shard", "epochs", "dtype"
)  # fmt: skip
_NOT_IN_FIT = {
    "samplewise_center": False,
    "samplewise_std_normalization": False,
    "featurewise_center": False,
    "featurewise_std_normalization": False,
    "zca_whitening": False,
    "stats": None,
    "dtype": "float32",
}
#: The flag that applies each of ``FitResult.refs`` (in their order).
_FLAGS = ("featurewise_center", "featurewise_std_normalization", "zca_whitening")
#: Bytes of float64 features per chunk of images (at least one image per chunk).
_CHUNK_BYTES = 8 << 20
_MAX_CHUNK = 64
#: Fits remembered (each entry is a few digests; the arrays live in the upload store).
_REMEMBERED = 1024


def _unreserved(nbytes: int) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


def fit_spec(request: StatsRequest) -> StreamSpec:
    """The spec a fit reads with: the request's, reduced to what changes its result."""
    fields = request.spec.model_dump()
    if request.augment:
        kept = {k: v for k, v in fields.items() if k not in _STREAM_ONLY}
    else:
        kept = {k: fields[k] for k in _SELECTION}
    return StreamSpec.model_validate({**kept, **_NOT_IN_FIT})


@dataclass(frozen=True)
class FitResult:
    """A fit's answer (``DatasetStats``' fields)."""

    samples: int
    statistics: Statistics
    refs: dict[str, str | None]

    def as_dict(self, spec: StreamSpec, *, cached: bool) -> dict[str, Any]:
        """The answer to a request with ``spec``: the values, and the digests of the arrays
        its flags apply (as Keras' ``fit`` sets only those), ready for its ``stats``."""
        stats = self.statistics
        assert stats.mean is not None and stats.std is not None
        zca = stats.zca_whitening_matrix
        return {
            "samples": self.samples,
            "mean": stats.mean.reshape(-1).tolist(),
            "std": stats.std.reshape(-1).tolist(),
            "stats": {
                name: digest if getattr(spec, flag) else None
                for (name, digest), flag in zip(self.refs.items(), _FLAGS, strict=True)
            },
            "zca_features": None if zca is None else len(zca),
            "cached": cached,
        }


class StatsBook:
    """Fits computed so far, by key; single flight; counted for ``/v1/cache``."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, FitResult] = OrderedDict()
        self._flights: dict[str, Flight] = {}
        self._lock = threading.Lock()
        self.computed = 0
        self.hits = 0

    def figures(self) -> dict[str, int]:
        """Fits computed, requests answered from earlier fits, fits remembered."""
        return {"computed": self.computed, "hits": self.hits, "entries": len(self._done)}

    def fit(
        self,
        request: StatsRequest,
        catalog: Catalog,
        uploads: UploadStore,
        limits: Limits,
        reader: ImageReader,
        pool: Executor,
        reserve: Callable[[int], AbstractContextManager[object]] = _unreserved,
    ) -> dict[str, Any]:
        """The statistics ``request`` asks for (``DatasetStats``' fields), computed now or
        earlier. Refuses (``PlanError``, naming the field) a ZCA matrix or a sample over the
        server's limits before reading anything; ``reserve(nbytes)`` holds the memory a
        computation needs (``fit_cost``) while it runs. A computation abandoned by its
        client (``scheduler.AbandonedError``) is taken over by a request waiting for it."""
        spec = fit_spec(request)
        source = resolve_samples(spec, catalog, uploads, limits, reader)
        ids = _sample_ids(request, len(source))
        _check_limits(request, spec, len(ids), limits)
        key = _key(request, spec, catalog)
        while True:
            with self._lock:
                done = self._done.get(key)
                if done is not None and _stored(uploads, done):
                    self._done.move_to_end(key)
                    self.hits += 1
                    return done.as_dict(request.spec, cached=True)
                flight = self._flights.get(key)
                mine = flight is None
                if mine:
                    flight = self._flights[key] = Flight()
            assert flight is not None
            if not mine:
                # Then look again: it is in the book, or it failed (and raised), or its
                # client left (and this request computes it).
                with contextlib.suppress(AbandonedError, CancelledError):
                    flight.wait()
                continue
            try:
                with reserve(_memory(request, spec)):
                    result = _compute(request, spec, source, ids, uploads, pool)
            except BaseException as exc:
                with self._lock:
                    del self._flights[key]
                flight.error = exc
                flight.done.set()
                raise
            # In the book before the flight lands, so no waiter finds neither and computes.
            with self._lock:
                del self._flights[key]
                self.computed += 1
                self._done[key] = result
                while len(self._done) > _REMEMBERED:
                    self._done.popitem(last=False)
            flight.done.set()
            return result.as_dict(request.spec, cached=False)


def _sample_ids(request: StatsRequest, count: int) -> Array:
    ids = np.arange(count, dtype=np.int64)
    if request.sample_size is not None and request.sample_size < count:
        order = sampling.epoch_order(count, request.seed or 0, 0, True)
        ids = np.sort(order[: request.sample_size])
    return ids


def _check_limits(request: StatsRequest, spec: StreamSpec, count: int, limits: Limits) -> None:
    images = count * (request.rounds if request.augment else 1)
    if images > limits.max_fit_images:
        raise PlanError(
            "sample_size",
            f"a fit on {count} images x {request.rounds if request.augment else 1} rounds "
            f"reads {images} images; this server fits on at most {limits.max_fit_images}: "
            "set sample_size (or fewer rounds)",
        )
    height, width = spec.target_size
    features = height * width * spec.channels
    if request.spec.zca_whitening and features > limits.max_zca_features:
        raise PlanError(
            "spec.zca_whitening",
            f"a ZCA matrix has (height x width x channels)^2 entries: target_size "
            f"{spec.target_size} x {spec.channels} channels is {features} features; this "
            f"server allows at most {limits.max_zca_features}: lower target_size or turn "
            "zca_whitening off",
        )


def _key(request: StatsRequest, spec: StreamSpec, catalog: Catalog) -> str:
    # The listing generation stands for the dataset's files, as in the image cache.
    generation = catalog.get(spec.dataset).generation if spec.dataset is not None else None
    random = request.augment or request.sample_size is not None
    return json.dumps(
        {
            "spec": spec.model_dump(mode="json"),
            "generation": generation,
            "augment": request.augment,
            "rounds": request.rounds if request.augment else 1,
            "seed": (request.seed or 0) if random else None,
            "sample_size": request.sample_size,
            "zca_epsilon": request.zca_epsilon if request.spec.zca_whitening else None,
        },
        sort_keys=True,
    )


def _stored(uploads: UploadStore, result: FitResult) -> bool:
    try:
        for digest in result.refs.values():
            if digest is not None:
                uploads.file(digest)
    except UnknownArrayError:  # evicted: compute again
        return False
    return True


def _chunk_size(features: int) -> int:
    return max(1, min(_MAX_CHUNK, _CHUNK_BYTES // (8 * features)))


def _window(features: int, full: bool) -> int:
    # A few chunks at a time, merged in order. A large ZCA chunk's scatter is a big D x D
    # matrix (128 MiB at D = 4096) whose product BLAS already spreads over the cores: one.
    return 1 if full and 8 * features * features > 4 * _CHUNK_BYTES else 4


def _memory(request: StatsRequest, spec: StreamSpec) -> int:
    """The bytes a computation of ``request`` holds at most (``costs.fit_cost``)."""
    height, width = spec.target_size
    features = height * width * spec.channels
    full = request.spec.zca_whitening
    return fit_cost(spec, _chunk_size(features), _window(features, full), full=full)


def _chunks(ids: Array, features: int) -> Iterator[Array]:
    size = _chunk_size(features)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _compute(
    request: StatsRequest,
    spec: StreamSpec,
    source: Samples,
    ids: Array,
    uploads: UploadStore,
    pool: Executor,
) -> FitResult:
    height, width = spec.target_size
    shape = (height, width, spec.channels)
    full = request.spec.zca_whitening
    seed = request.seed or 0
    rounds = request.rounds if request.augment else 1

    def moments(chunk: tuple[int, Array]) -> Moments:
        round_, chunk_ids = chunk
        images = source.images(chunk_ids.tolist())
        x = np.empty((len(images), *shape), np.float32)
        kept = 0
        for sample_id, image in zip(chunk_ids.tolist(), images, strict=True):
            if isinstance(image, SampleError):
                if source.on_corrupt == "skip":
                    continue  # left out of the statistics, as of the stream
                raise SampleError(f"sample {sample_id} {image}") from image
            checkpoint()  # the client may have gone: stop between images
            params = IDENTITY
            if request.augment:
                params = sample(sampling.sample_rng(seed, round_, sample_id), spec, image.shape)
            apply(image, params, spec, x[kept])
            kept += 1
        if not kept:
            return Moments(0, np.zeros(0), np.zeros(0))
        return Moments.of(x[:kept], full=full)

    features = int(np.prod(shape))
    work = [(r, chunk) for r in range(rounds) for chunk in _chunks(ids, features)]
    total = Moments(0, np.zeros(0), np.zeros(0))
    window = _window(features, full)
    for start in range(0, len(work), window):
        for part in pool.map(moments, work[start : start + window]):
            total = total.merged(part)
    if not total.count:
        raise PlanError("dataset", "no image of the sample could be read")
    zca_epsilon = request.zca_epsilon if full else None
    # On a worker too: a ZCA eigendecomposition is seconds of CPU, the fit's share of them.
    statistics = pool.submit(fit_statistics, total, shape, zca_epsilon=zca_epsilon).result()
    refs: dict[str, str | None] = {"mean": None, "std": None, "zca_whitening_matrix": None}
    for name in refs:
        array = getattr(statistics, name)
        if array is not None:
            refs[name] = uploads.add(array).digest
    return FitResult(total.count, statistics, refs)


def load_statistics(spec: StreamSpec, uploads: UploadStore, limits: Limits) -> Statistics | None:
    """The statistics a stream's spec names, checked against its images' shape; None when
    it standardises nothing featurewise. ``PlanError`` names a missing or unfit array."""
    if not spec.featurewise_center:  # std and ZCA imply centring (the spec resolves them)
        return None
    height, width = spec.target_size
    shape = (height, width, spec.channels)
    features = height * width * spec.channels
    refs = spec.stats
    wanted: list[tuple[str, str, bool]] = [
        ("mean", "featurewise_center", True),
        ("std", "featurewise_std_normalization", spec.featurewise_std_normalization),
        ("zca_whitening_matrix", "zca_whitening", spec.zca_whitening),
    ]
    arrays: dict[str, Array] = {}
    for name, flag, needed in wanted:
        if not needed:
            continue
        digest = None if refs is None else getattr(refs, name)
        if digest is None:
            raise PlanError(
                f"stats.{name}",
                f"{flag}=True needs the training data's {name}: fit first "
                "(ImageDataGenerator.fit, Client.stats or POST /v1/stats) and name its "
                f"digest in stats.{name}",
            )
        array = uploads.load(digest)
        if name == "zca_whitening_matrix":
            _check_zca(array, shape, features, limits)
        elif array.dtype.kind not in "iuf" or not _broadcasts(array.shape, shape):
            raise PlanError(
                f"stats.{name}",
                f"expected numbers that broadcast to the images' {shape} (Keras': 1 x 1 x "
                f"{spec.channels}), got {array.dtype} of shape {array.shape}",
            )
        arrays[name] = np.asarray(array, dtype=np.float32)
    return Statistics(**arrays)


def _broadcasts(given: tuple[int, ...], shape: tuple[int, int, int]) -> bool:
    if len(given) > 3:
        return False
    try:
        return np.broadcast_shapes(given, shape) == shape
    except ValueError:
        return False


def _check_zca(array: Array, shape: tuple[int, int, int], features: int, limits: Limits) -> None:
    if features > limits.max_zca_features:
        raise PlanError(
            "zca_whitening",
            f"target_size {shape[:2]} x {shape[2]} channels is {features} features; this "
            f"server whitens at most {limits.max_zca_features}: lower target_size",
        )
    if array.dtype.kind != "f" or array.shape != (features, features):
        raise PlanError(
            "stats.zca_whitening_matrix",
            f"expected a float {features} x {features} matrix for images of {shape}, got "
            f"{array.dtype} of shape {array.shape}",
        )
