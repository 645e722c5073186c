"""The building blocks of a stream spec: value types, limits and the small models a spec
holds (its start position, its shard, the uploaded arrays and statistics it names)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

__all__ = [
    "MAX_REPLICAS",
    "MAX_SIDE",
    "ArrayRefs",
    "ClassMode",
    "ColorMode",
    "DatasetName",
    "Digest",
    "FillMode",
    "Frozen",
    "Interpolation",
    "Position",
    "Quality",
    "Shard",
    "ShiftRange",
    "Side",
    "StatsRefs",
    "UnitRange",
    "channels_for",
    "field_value",
]

ColorMode = Literal["grayscale", "rgb", "rgba"]
ClassMode = Literal[
    "categorical", "binary", "sparse", "input", "none", "raw", "multi_output", "mask"
]
FillMode = Literal["constant", "nearest", "reflect", "wrap"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "area", "box"]

#: Largest accepted image side in pixels; a server may enforce a lower limit.
MAX_SIDE = 8192
#: Most servers one stream can be spread over.
MAX_REPLICAS = 64

_CHANNELS: dict[str, int] = {"grayscale": 1, "rgb": 3, "rgba": 4}

# A shift range is a fraction (float < 1), pixels (float >= 1), whole pixels in (-n, n)
# (int n), or a list of choices; the int/float distinction is ImageDataGenerator's own.
ShiftRange = int | float | list[float]


def channels_for(color_mode: ColorMode) -> int:
    """Number of channels a ``color_mode`` produces."""
    return _CHANNELS[color_mode]


class Frozen(BaseModel):
    """A model that refuses unknown fields and cannot be changed once made.

    The docstring under each field is its description (in ``/openapi.json`` and in the
    manual's generated spec reference); it changes no value and no byte of a stream.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class _Pair(Frozen):
    """A two-field model that also accepts a ``(first, second)`` pair, as Keras users write."""

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            names = list(cls.model_fields)[:2]
            if len(value) != 2:
                raise ValueError(f"expected ({', '.join(names)}), got {value!r}")
            return dict(zip(names, value, strict=True))
        return value


class Position(_Pair):
    """Where a stream starts: batch ``batch`` of epoch ``epoch`` (both 0-based)."""

    epoch: NonNegativeInt = 0
    """The epoch to start in, 0-based."""
    batch: NonNegativeInt = 0
    """The batch of that epoch to start at, 0-based (of this shard's batches)."""


class Shard(_Pair):
    """Shard ``index`` of ``count``: disjoint slices that together cover every epoch once
    (or, ``drop_remainder``, all of it but fewer than ``count`` samples)."""

    index: NonNegativeInt = 0
    """This shard's number, 0-based and below ``count``."""
    count: Annotated[int, Field(ge=1, le=65536)] = 1
    """How many shards the epoch is cut into; 1 (the default) streams the whole epoch."""
    equal: bool = False
    """Give every shard the same number of batches per epoch, its largest shard's, still
    serving every sample once: data-parallel workers then run the same number of steps.
    Shards differ by at most one sample, so where a smaller shard would have one batch
    fewer it splits its last one in two (``batch_size - 1`` and 1 samples). Needs
    ``batch_size`` of 2 or more. Off: each shard's own count of batches."""
    drop_remainder: bool = False
    """Give every shard ``N // count`` of the epoch's ``N`` samples, leaving out the last
    ``N % count`` of its (shuffled) order, other samples each epoch: every worker's steps
    then hold the same number of samples (as multi-host JAX needs, and ``tf.data``'s
    sharding with ``drop_remainder`` does), and the same number of steps."""

    @model_validator(mode="after")
    def _index_in_range(self) -> Shard:
        if self.index >= self.count:
            raise ValueError(f"shard index must be < count {self.count}, got {self.index}")
        return self


Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
#: A fraction of an image's area, (0, 1].
UnitFraction = Annotated[float, Field(gt=0, le=1)]
UnitRange = tuple[UnitFraction, UnitFraction]
Quality = Annotated[int, Field(ge=1, le=100)]

#: An uploaded array's name: the SHA-256 (lowercase hex) of its ``.npy`` encoding.
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

# Names start with a letter or digit: never "." or "..", never hidden.
DatasetName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class ArrayRefs(Frozen):
    """Uploaded arrays (``Client.upload``) that a stream reads row by row.

    ``x`` holds the images themselves, N x H x W x C (``flow``); ``filenames`` instead names
    files inside the spec's ``dataset``, one per row (``flow_from_dataframe``), and
    ``validate_filenames`` drops the rows whose file is missing or not an image. ``y`` holds
    the label arrays (one per model output) and ``sample_weight`` the weights; row i of every
    array belongs to the same sample.
    """

    x: Digest | None = None
    """The images, N x H x W x C (``flow``): leave the spec's ``dataset`` unset."""
    filenames: Digest | None = None
    """One file name per row, relative to the spec's ``dataset`` (``flow_from_dataframe``)."""
    validate_filenames: bool = False
    """Drop the rows of ``filenames`` whose file is missing or not an image (Keras'
    ``validate_filenames``); off, such a file is a corrupt sample."""
    y: list[Digest] = Field(default_factory=list, max_length=64)
    """The label arrays, one per model output, row for row with the samples; none for
    ``class_mode`` ``input`` and ``none``."""
    sample_weight: Digest | None = None
    """Per-row sample weights: batches become ``(x, y, w)``."""

    @model_validator(mode="after")
    def _one_source(self) -> ArrayRefs:
        if (self.x is None) == (self.filenames is None):
            raise ValueError("give exactly one of arrays.x (images) and arrays.filenames")
        if self.validate_filenames and self.filenames is None:
            raise ValueError("validate_filenames applies to arrays.filenames only")
        return self


class StatsRefs(Frozen):
    """Dataset statistics a stream applies, as uploaded arrays named by digest: those
    ``POST /v1/stats`` computed (``ImageDataGenerator.fit``), or precomputed ones stored with
    ``Client.upload``. ``mean`` and ``std`` broadcast to H x W x C (Keras' are 1 x 1 x C);
    ``zca_whitening_matrix`` is (H*W*C) x (H*W*C).
    """

    mean: Digest | None = None
    """The mean subtracted under ``featurewise_center``."""
    std: Digest | None = None
    """The standard deviation divided by under ``featurewise_std_normalization``."""
    zca_whitening_matrix: Digest | None = None
    """The ZCA matrix applied under ``zca_whitening``."""


def field_value(raw: str) -> Any:
    """A spec field's value written as text (a query parameter, ``--set NAME=VALUE``): JSON
    when it parses (``20``, ``true``, ``[0.9, 1.1]``), else the text itself (``reflect``)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
