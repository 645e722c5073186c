"""Wire the stages together: plan a stream, then produce and encode any batch of it.

``produce_batch`` is a pure function of ``(plan, epoch, batch)``, which is what makes streams
reproducible, resumable and shardable; the server runs it on its own thread pool.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from augstream.spec import StreamSpec
from augstream.wire import PROTOCOL_VERSION, encode_batch

from . import sampling
from .augment import apply, sample
from .batching import allocate_images, batch_nbytes, make_labels
from .catalog import Dataset
from .decode import DecodeError, decode_image
from .sources import Listing, SourceError, read_file

__all__ = [
    "Limits",
    "PlanError",
    "ProducedBatch",
    "SampleError",
    "StreamPlan",
    "make_plan",
    "resolve_listing",
]


class PlanError(ValueError):
    """The spec is valid on its own but not for this dataset or server; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class SampleError(RuntimeError):
    """One sample could not be read or decoded; names the sample and its file."""


@dataclass(frozen=True)
class Limits:
    """What one stream may ask of the server."""

    max_batch_bytes: int = 256 << 20
    max_file_bytes: int = 64 << 20


@dataclass(frozen=True)
class ProducedBatch:
    """One batch, ready to encode."""

    epoch: int
    batch: int
    sample_ids: list[int]
    arrays: dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class StreamPlan:
    """A spec resolved against a dataset: everything a batch needs besides its position."""

    spec: StreamSpec
    dataset: Dataset
    listing: Listing
    limits: Limits

    @property
    def samples(self) -> int:
        """Samples per epoch in this stream's shard."""
        return sampling.shard_size(
            len(self.listing.files), self.spec.shard.index, self.spec.shard.count
        )

    @property
    def batches_per_epoch(self) -> int:
        """Batches per epoch in this stream's shard."""
        spec = self.spec
        return sampling.batches_per_epoch(
            len(self.listing.files), spec.batch_size, spec.shard.index, spec.shard.count
        )

    def header(self) -> dict[str, Any]:
        """The stream's header frame: what the client needs before the first batch."""
        spec = self.spec
        height, width = spec.target_size
        arrays: dict[str, Any] = {
            "x": {"dtype": spec.output_dtype, "shape": [None, height, width, spec.channels]}
        }
        num_classes = len(self.listing.class_names)
        if spec.class_mode == "categorical":
            arrays["y"] = {"dtype": "float32", "shape": [None, num_classes]}
        elif spec.class_mode in ("binary", "sparse"):
            arrays["y"] = {"dtype": "float32", "shape": [None]}
        return {
            "protocol": PROTOCOL_VERSION,
            "spec": spec.model_dump(mode="json"),
            "dataset": self.dataset.name,
            "dataset_samples": len(self.listing.files),
            "samples": self.samples,
            "batches_per_epoch": self.batches_per_epoch,
            "class_indices": self.listing.class_indices,
            "arrays": arrays,
        }

    def produce_batch(self, epoch: int, batch: int) -> ProducedBatch:
        """Read, decode, augment and collate batch ``batch`` of ``epoch``."""
        spec = self.spec
        seed = spec.seed if spec.seed is not None else 0
        ids = sampling.batch_indices(
            len(self.listing.files),
            seed=seed,
            epoch=epoch,
            batch=batch,
            batch_size=spec.batch_size,
            shuffle=spec.shuffle,
            shard_index=spec.shard.index,
            shard_count=spec.shard.count,
        )
        x = allocate_images(len(ids), spec)
        for slot, sample_id in enumerate(ids.tolist()):
            image = self._load(sample_id)
            params = sample(sampling.sample_rng(seed, epoch, sample_id), spec, image.shape)
            apply(image, params, spec, x[slot])
        arrays = {"x": x}
        y = make_labels(spec.class_mode, self.listing.labels[ids], len(self.listing.class_names))
        if y is not None:
            arrays["y"] = y
        return ProducedBatch(epoch=epoch, batch=batch, sample_ids=ids.tolist(), arrays=arrays)

    def encode_batch(self, epoch: int, batch: int) -> list[bytes | memoryview]:
        """``produce_batch`` as wire frame parts, ready to write."""
        produced = self.produce_batch(epoch, batch)
        return encode_batch(produced.epoch, produced.batch, produced.sample_ids, produced.arrays)

    def _load(self, sample_id: int) -> np.ndarray[Any, Any]:
        relative = self.listing.files[sample_id]
        spec = self.spec
        try:
            data = read_file(self.dataset.root, relative, self.limits.max_file_bytes)
            return decode_image(
                data,
                color_mode=spec.color_mode,
                target_size=spec.target_size,
                interpolation=spec.interpolation,
                keep_aspect_ratio=spec.keep_aspect_ratio,
            )
        except (SourceError, DecodeError) as exc:
            raise SampleError(
                f"sample {sample_id} ({self.dataset.name}/{relative}): {exc}"
            ) from exc


def resolve_listing(spec: StreamSpec, dataset: Dataset) -> Listing:
    """The files a spec streams from: the dataset, its ``classes`` and its ``subset``."""
    listing = dataset.listing
    if spec.classes is not None:
        try:
            listing = listing.select(spec.classes)
        except KeyError as exc:
            raise PlanError("classes", str(exc.args[0])) from exc
    if spec.subset is not None:
        listing = listing.split(spec.validation_split, spec.subset)
    if not listing.files:
        what = f"the {spec.subset} subset of " if spec.subset else ""
        raise PlanError("dataset", f"{what}dataset {dataset.name!r} has no images")
    return listing


def make_plan(spec: StreamSpec, dataset: Dataset, limits: Limits) -> StreamPlan:
    """Check ``spec`` against ``dataset`` and the server's limits; fix the seed if unset."""
    nbytes = batch_nbytes(spec)
    if nbytes > limits.max_batch_bytes:
        raise PlanError(
            "batch_size",
            f"a batch of {spec.batch_size} x {spec.target_size} x {spec.channels} "
            f"{spec.output_dtype} is {nbytes} bytes; this server allows at most "
            f"{limits.max_batch_bytes} bytes per batch: lower batch_size or target_size",
        )
    listing = resolve_listing(spec, dataset)
    if spec.class_mode == "binary" and len(listing.class_names) != 2:
        raise PlanError(
            "class_mode",
            f"class_mode='binary' needs exactly 2 classes; dataset {dataset.name!r} has "
            f"{len(listing.class_names)}: {list(listing.class_names)}",
        )
    if spec.seed is None:
        spec = spec.with_seed(secrets.randbelow(2**31))
    plan = StreamPlan(spec=spec, dataset=dataset, listing=listing, limits=limits)
    if plan.samples == 0:
        raise PlanError(
            "shard",
            f"shard {spec.shard.index} of {spec.shard.count} is empty: the dataset has "
            f"only {len(listing.files)} images",
        )
    if spec.start.batch >= plan.batches_per_epoch:
        raise PlanError(
            "start",
            f"start batch {spec.start.batch} is past the end of an epoch "
            f"({plan.batches_per_epoch} batches)",
        )
    return plan
