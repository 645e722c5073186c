"""Wire the stages together: plan a stream, then produce and encode any batch of it.

``produce_batch`` is a pure function of ``(plan, epoch, batch)``, which is what makes streams
reproducible, resumable and shardable; the server runs it on its own thread pool.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from augstream_protocol.numerics import families
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import PROTOCOL_VERSION, encode_batch

from . import sampling
from .augment import mix_batch
from .batching import allocate_images, allocate_masks, batch_nbytes
from .catalog import Catalog
from .compact import exact_as_uint8
from .fit import load_statistics
from .limits import Limits
from .making import make_samples
from .metrics import Metrics
from .numerics import fingerprint
from .reader import ImageReader
from .resolve import resolve_samples
from .samples import PlanError, SampleError, Samples
from .stats import Statistics
from .uploads import UploadStore

__all__ = [
    "EncodedBatch",
    "Limits",
    "PlanError",
    "ProducedBatch",
    "SampleError",
    "StreamPlan",
    "make_plan",
]


@dataclass(frozen=True)
class ProducedBatch:
    """One batch, ready to encode."""

    epoch: int
    batch: int
    sample_ids: list[int]
    arrays: dict[str, np.ndarray[Any, Any]]
    skipped: list[tuple[int, str]]
    #: The CRC-32 of each row of some of ``arrays`` (``x``'s, as the worker processes made
    #: them), for the frame's CRC (``wire.encode_batch``); none where not known.
    row_crcs: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class EncodedBatch:
    """One batch as wire frame parts, and how many images it holds."""

    parts: list[bytes | memoryview]
    images: int

    @property
    def nbytes(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in self.parts)


Array = np.ndarray[Any, Any]
#: Makes a batch's samples elsewhere: ``(plan, epoch, ids, dtype of x) -> (x, masks, each
#: sample's error, seconds augmenting, each image's CRC-32 or None)``, as
#: ``making.make_samples`` does in this thread.
Maker = Callable[
    ["StreamPlan", int, list[int], str],
    tuple[Array, Array | None, list[str | None], float, list[int | None] | None],
]


@dataclass(frozen=True)
class StreamPlan:
    """A spec resolved against what it reads: everything a batch needs besides its
    position."""

    spec: StreamSpec
    source: Samples
    limits: Limits
    #: Where skipped samples and stage timings are counted (none: not counted).
    metrics: Metrics | None = None
    #: Dataset statistics applied after the per-sample standardisation (Keras' order).
    featurewise: Statistics | None = None
    #: Float images travel as their uint8 pixels and a scale (``compact.exact_as_uint8``).
    compact: bool = False
    #: Where the batch's samples are made, when not in the calling thread (the worker
    #: processes: ``processes.ProcessPool.make``).
    maker: Maker | None = None

    @functools.cached_property
    def spec_json(self) -> str:
        """The resolved spec as JSON (sent to the worker processes with each batch)."""
        return self.spec.model_dump_json()

    @functools.cached_property
    def key(self) -> str:
        """What the plan's samples depend on, digested (the spec but where a request starts
        and how much it asks for, compact frames, what is read): the same for every request
        of one stream, so worker processes keep one plan for all of them."""
        placement = {"start", "stride", "batches"}
        text = self.spec.model_dump_json(exclude=placement)
        seen = f"{text}|{self.compact}|{self.source.digest()}"
        return hashlib.sha256(seen.encode()).hexdigest()[:24]

    @property
    def samples(self) -> int:
        """Samples per epoch in this stream's shard."""
        shard = self.spec.shard
        return sampling.shard_size(len(self.source), shard.index, shard.count, shard.drop_remainder)

    @property
    def batches_per_epoch(self) -> int:
        """Batches per epoch in this stream's shard."""
        spec = self.spec
        shard = spec.shard
        return sampling.batches_per_epoch(
            len(self.source),
            spec.batch_size,
            shard.index,
            shard.count,
            shard.equal,
            shard.drop_remainder,
        )

    def header(self) -> dict[str, Any]:
        """The stream's header frame: what the client needs before the first batch."""
        spec = self.spec
        height, width = spec.target_size
        arrays: dict[str, Any] = {
            "x": {"dtype": spec.output_dtype, "shape": [None, height, width, spec.channels]},
            **self.source.label_arrays(),
        }
        if self.compact:
            arrays["x"]["wire"] = {"dtype": "uint8", "scale": spec.rescale or 1.0}
        return {
            "protocol": PROTOCOL_VERSION,
            # Fields at their defaults left out: a client older than a field (whose spec
            # model refuses fields it does not know) still reads the streams that do not
            # use it.
            "spec": spec.model_dump(mode="json", exclude_defaults=True),
            "dataset": self.source.name,
            "dataset_samples": len(self.source),
            "samples": self.samples,
            "batches_per_epoch": self.batches_per_epoch,
            "class_indices": {name: i for i, name in enumerate(self.source.class_names)},
            "arrays": arrays,
            "numerics": {family: fingerprint()[family] for family in families(spec)},
        }

    def produce_batch(self, epoch: int, batch: int, *, compact: bool = False) -> ProducedBatch:
        """Read, decode, augment and collate batch ``batch`` of ``epoch``; ``compact`` (for a
        compact plan) leaves ``x`` as the uint8 pixels, before ``rescale``."""
        spec = self.spec
        seed = spec.seed if spec.seed is not None else 0
        ids = sampling.batch_indices(
            len(self.source),
            seed=seed,
            epoch=epoch,
            batch=batch,
            batch_size=spec.batch_size,
            shuffle=spec.shuffle,
            shard_index=spec.shard.index,
            shard_count=spec.shard.count,
            equal=spec.shard.equal,
            drop=spec.shard.drop_remainder,
        )
        # apply() writes the uint8 pixels into a uint8 buffer and stops there.
        dtype = "uint8" if compact else spec.output_dtype
        wanted = ids.tolist()
        crcs: list[int | None] | None = None
        if self.maker is not None:  # worker processes (``processes``)
            x, y_mask, errors, seconds, crcs = self.maker(self, epoch, wanted, dtype)
        else:
            x = allocate_images(len(ids), spec, dtype)
            y_mask = allocate_masks(len(ids), spec) if spec.class_mode == "mask" else None
            errors, seconds = make_samples(
                spec, self.source, epoch, wanted, x, y_mask, range(len(wanted))
            )
        skipped: list[tuple[int, str]] = []
        if errors.count(None) == len(errors):  # every sample made: none to leave out
            kept = wanted
        else:
            kept, skipped = self._leave_out(wanted, errors, x, y_mask)
            crcs = None  # rows moved up over the gaps (seldom: not worth following)
        if self.metrics is not None:
            self.metrics.observe("augment", seconds)
            if skipped:
                self.metrics.skip(self.source.name, len(skipped))
        if self.featurewise is not None:
            self.featurewise.apply(x[: len(kept)])
        labels = self.source.labels(np.asarray(kept, dtype=np.int64))
        if y_mask is not None:
            labels["y"] = y_mask[: len(kept)]
        arrays = {"x": x[: len(kept)], **labels}
        if spec.mixup_alpha or spec.cutmix_alpha:
            rng = sampling.batch_rng(seed, epoch, batch, spec.shard.index)
            arrays = mix_batch(rng, arrays, spec)
        # The workers' CRCs hold while x is the bytes they wrote: not once it was changed here.
        changed = self.featurewise is not None or spec.mixup_alpha or spec.cutmix_alpha
        known = [crc for crc in crcs if crc is not None] if crcs and not changed else []
        rows = {"x": known} if known and len(known) == len(kept) else None
        return ProducedBatch(epoch, batch, kept, arrays, skipped, rows)

    def _leave_out(
        self, wanted: list[int], errors: list[str | None], x: Array, y_mask: Array | None
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """The samples made and those skipped (by the policy; else ``SampleError``), the
        made ones moved up over the gaps in ``x`` (and ``y_mask``)."""
        kept: list[int] = []
        skipped: list[tuple[int, str]] = []
        for slot, (sample_id, error) in enumerate(zip(wanted, errors, strict=True)):
            if error is not None:
                if self.source.on_corrupt == "skip":
                    skipped.append((sample_id, error))
                    continue
                raise SampleError(f"sample {sample_id} {error}")
            if slot != len(kept):  # close the gap a skipped sample left
                x[len(kept)] = x[slot]
                if y_mask is not None:
                    y_mask[len(kept)] = y_mask[slot]
            kept.append(sample_id)
        return kept, skipped

    def encode_batch(self, epoch: int, batch: int) -> EncodedBatch:
        """``produce_batch`` as wire frame parts, ready to write."""
        return self.encode(self.produce_batch(epoch, batch, compact=self.compact))

    def encode(self, produced: ProducedBatch) -> EncodedBatch:
        """A produced batch as wire frame parts (referencing its arrays), ready to write."""
        started = time.perf_counter()
        parts = encode_batch(
            produced.epoch,
            produced.batch,
            produced.sample_ids,
            produced.arrays,
            produced.skipped,
            produced.row_crcs,
        )
        if self.metrics is not None:
            self.metrics.observe("encode", time.perf_counter() - started)
        return EncodedBatch(_coalesced(parts), len(produced.sample_ids))


#: Frame parts below this size are joined with their neighbours: each part is one pass
#: through the send chain (~0.1 ms of the event loop), and the headers and labels are small.
_SMALL_PART = 64 << 10


def _coalesced(parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """``parts`` with every run of small ones joined (the large arrays stay as views)."""
    out: list[bytes | memoryview] = []
    run: list[bytes | memoryview] = []
    for part in parts:
        if len(part) < _SMALL_PART:
            run.append(part)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(part)
    if run:
        out.append(b"".join(run))
    return out


def make_plan(
    spec: StreamSpec,
    catalog: Catalog,
    uploads: UploadStore,
    limits: Limits,
    reader: ImageReader,
    metrics: Metrics | None = None,
    compact: bool = False,
    maker: Maker | None = None,
) -> StreamPlan:
    """Check ``spec`` against what it reads and the server's limits; fix the seed if unset.

    ``compact``: the client expands compact images (``augstream.wire.COMPACT_REQUEST``);
    ``maker``: where the batch's samples are made (default: in the calling thread).
    """
    nbytes = batch_nbytes(spec)
    if nbytes > limits.max_batch_bytes:
        raise PlanError(
            "batch_size",
            f"a batch of {spec.batch_size} x {spec.target_size} x {spec.channels} "
            f"{spec.output_dtype} is {nbytes} bytes; this server allows at most "
            f"{limits.max_batch_bytes} bytes per batch: lower batch_size or target_size",
        )
    source = resolve_samples(spec, catalog, uploads, limits, reader)
    # Uploaded labels can be large per row (raw or multi-output targets): they count too.
    label_bytes = spec.batch_size * sum(
        np.dtype(entry["dtype"]).itemsize * math.prod(entry["shape"][1:])
        for entry in source.label_arrays().values()
    )
    if nbytes + label_bytes > limits.max_batch_bytes:
        raise PlanError(
            "batch_size",
            f"a batch of {spec.batch_size} images and their labels is "
            f"{nbytes + label_bytes} bytes; this server allows at most "
            f"{limits.max_batch_bytes} bytes per batch: lower batch_size",
        )
    if spec.class_mode == "binary" and len(source.class_names) != 2:
        raise PlanError(
            "class_mode",
            f"class_mode='binary' needs exactly 2 classes; {source.name!r} has "
            f"{len(source.class_names)}: {list(source.class_names)}",
        )
    if spec.seed is None:
        spec = spec.with_seed(secrets.randbelow(2**31))
    compact = compact and exact_as_uint8(spec, source)
    plan = StreamPlan(
        spec=spec,
        source=source,
        limits=limits,
        metrics=metrics,
        featurewise=load_statistics(spec, uploads, limits),
        compact=compact,
        maker=maker,
    )
    if plan.samples == 0:
        raise PlanError(
            "shard",
            f"shard {spec.shard.index} of {spec.shard.count} is empty: {source.name!r} has "
            f"only {len(source)} samples",
        )
    shard = spec.shard
    equal = shard.equal and not shard.drop_remainder
    if equal and not sampling.equal_shards_fit(len(source), spec.batch_size, shard.count):
        raise PlanError(
            "shard",
            f"{shard.count} equal shards of {source.name!r}'s {len(source)} samples in batches "
            f"of {spec.batch_size} cannot all run {plan.batches_per_epoch} steps with every "
            "sample once: use a batch_size of 2 or more, or drop_remainder",
        )
    if spec.start.batch >= plan.batches_per_epoch:
        raise PlanError(
            "start",
            f"start batch {spec.start.batch} is past the end of an epoch "
            f"({plan.batches_per_epoch} batches)",
        )
    return plan
