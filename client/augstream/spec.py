"""The one definition of a stream request, shared by the client and the server.

Augmentation fields keep the names and the documented meaning of Keras' legacy
``ImageDataGenerator``; see the README for the few places where augstream follows the
documentation rather than the legacy implementation.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "ArrayRefs",
    "ColorMode",
    "ClassMode",
    "Digest",
    "FillMode",
    "Interpolation",
    "MAX_SIDE",
    "Position",
    "Shard",
    "ShiftRange",
    "StatsRefs",
    "StreamSpec",
    "field_value",
    "channels_for",
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


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Pair(_Frozen):
    """A two-field model that also accepts a ``(first, second)`` pair, as Keras users write."""

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            names = list(cls.model_fields)
            if len(value) != 2:
                raise ValueError(f"expected ({', '.join(names)}), got {value!r}")
            return dict(zip(names, value, strict=True))
        return value


class Position(_Pair):
    """Where a stream starts: batch ``batch`` of epoch ``epoch`` (both 0-based)."""

    epoch: NonNegativeInt = 0
    batch: NonNegativeInt = 0


class Shard(_Pair):
    """Shard ``index`` of ``count``: disjoint slices that together cover every epoch once."""

    index: NonNegativeInt = 0
    count: Annotated[int, Field(ge=1, le=65536)] = 1

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

_CLASS_MODES_WITH_LABELS = ("categorical", "binary", "sparse")

# Upper ends of the newer operations' [lower, upper] ranges (beyond them an image is only
# noise, or the draw cannot be made).
_RANGE_TOPS = {
    "random_resized_crop_ratio": 100.0,
    "erasing_ratio": 100.0,
    "contrast_range": 100.0,
    "saturation_range": 100.0,
    "blur_sigma_range": 50.0,
    "noise_std_range": 255.0,
}
# Labels that mixup and cutmix can mix: one-hot or multi-hot (categorical), 0/1 (binary).
_MIXABLE = ("categorical", "binary", "none", "input", "mask")


class ArrayRefs(_Frozen):
    """Uploaded arrays (``Client.upload``) that a stream reads row by row.

    ``x`` holds the images themselves, N x H x W x C (``flow``); ``filenames`` instead names
    files inside the spec's ``dataset``, one per row (``flow_from_dataframe``), and
    ``validate_filenames`` drops the rows whose file is missing or not an image. ``y`` holds
    the label arrays (one per model output) and ``sample_weight`` the weights; row i of every
    array belongs to the same sample.
    """

    x: Digest | None = None
    filenames: Digest | None = None
    validate_filenames: bool = False
    y: list[Digest] = Field(default_factory=list, max_length=64)
    sample_weight: Digest | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ArrayRefs:
        if (self.x is None) == (self.filenames is None):
            raise ValueError("give exactly one of arrays.x (images) and arrays.filenames")
        if self.validate_filenames and self.filenames is None:
            raise ValueError("validate_filenames applies to arrays.filenames only")
        return self


class StatsRefs(_Frozen):
    """Dataset statistics a stream applies, as uploaded arrays named by digest: those
    ``POST /v1/stats`` computed (``ImageDataGenerator.fit``), or precomputed ones stored with
    ``Client.upload``. ``mean`` and ``std`` broadcast to H x W x C (Keras' are 1 x 1 x C);
    ``zca_whitening_matrix`` is (H*W*C) x (H*W*C).
    """

    mean: Digest | None = None
    std: Digest | None = None
    zca_whitening_matrix: Digest | None = None


class StreamSpec(_Frozen):
    """What to stream: which dataset (or uploaded arrays), how to decode, batch and augment it.

    A batch is a pure function of ``(spec, epoch, batch index)``: the same spec always gives
    the same bytes. ``seed=None`` asks the server to pick one; the resolved spec in the
    stream header carries it, so a resumed stream stays identical.
    """

    dataset: DatasetName | None = None
    arrays: ArrayRefs | None = None
    target_size: tuple[Side, Side] = (256, 256)
    color_mode: ColorMode = "rgb"
    classes: list[str] | None = Field(default=None, min_length=1)
    class_mode: ClassMode = "categorical"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    shuffle: bool = True
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    interpolation: Interpolation = "nearest"
    keep_aspect_ratio: bool = False
    dtype: Literal["uint8", "float32"] | None = None
    start: Position = Position()
    #: Every ``stride``-th batch from ``start``: one replica's part of a stream spread over
    #: ``stride`` servers (``Client`` with several URLs sets it; the batches are unchanged).
    stride: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    shard: Shard = Shard()
    epochs: Annotated[int, Field(ge=1)] | None = None
    validation_split: Annotated[float, Field(ge=0, lt=1)] = 0.0
    subset: Literal["training", "validation"] | None = None

    # ImageDataGenerator's augmentation parameters, same names, same defaults.
    rotation_range: Annotated[float, Field(ge=0, le=360)] = 0.0
    width_shift_range: ShiftRange = 0.0
    height_shift_range: ShiftRange = 0.0
    shear_range: Annotated[float, Field(ge=0, le=90)] = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    channel_shift_range: Annotated[float, Field(ge=0, le=255)] = 0.0
    brightness_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    fill_mode: FillMode = "nearest"
    cval: Annotated[float, Field(ge=-1e6, le=1e6)] = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    interpolation_order: Literal[0, 1, 3] = 1
    rescale: Annotated[float, Field(ge=-1e6, le=1e6)] | None = None
    samplewise_center: bool = False
    samplewise_std_normalization: bool = False
    # Keras' dataset-wide standardisation, applied after the sample-wise one with the
    # arrays named in ``stats`` (fit first: ImageDataGenerator.fit or POST /v1/stats).
    featurewise_center: bool = False
    featurewise_std_normalization: bool = False
    zca_whitening: bool = False
    stats: StatsRefs | None = None

    # class_mode="mask": the masks' fill value where fill_mode="constant" leaves the image.
    mask_cval: Annotated[int, Field(ge=0, le=255)] = 0

    # Operations beyond ImageDataGenerator's (README, "More operations"); each is off at its
    # default, so a spec without them streams exactly what it did before they existed.
    random_crop_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    random_resized_crop_scale: UnitRange | None = None
    random_resized_crop_ratio: tuple[PositiveFloat, PositiveFloat] = (3 / 4, 4 / 3)
    erasing_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    erasing_scale: UnitRange = (0.02, 0.33)
    erasing_ratio: tuple[PositiveFloat, PositiveFloat] = (0.3, 3.3)
    erasing_value: Annotated[float, Field(ge=0, le=255)] = 0.0
    contrast_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    saturation_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    hue_shift_range: Annotated[float, Field(ge=0, le=180)] = 0.0
    grayscale_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    blur_sigma_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    noise_std_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    jpeg_quality_range: tuple[Quality, Quality] | None = None
    mixup_alpha: Annotated[float, Field(ge=0, le=100)] = 0.0
    cutmix_alpha: Annotated[float, Field(ge=0, le=100)] = 0.0

    #: "keras-legacy" reproduces the legacy implementation where it departs from its own
    #: documentation (swapped shift axes, off-centre warps of non-square images, brightness
    #: through 8 bits), for users who must match old results.
    compat: Literal["documented", "keras-legacy"] = "documented"

    @field_validator("width_shift_range", "height_shift_range")
    @classmethod
    def _check_shift(cls, value: ShiftRange) -> ShiftRange:
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ValueError("a list of shift choices must not be empty")
        for v in values:
            if not math.isfinite(v) or abs(v) > MAX_SIDE:
                raise ValueError(f"expected a finite shift within +-{MAX_SIDE}, got {v!r}")
        if not isinstance(value, list) and value < 0:
            raise ValueError(f"expected a non-negative range, got {value!r}")
        return value

    @field_validator("zoom_range")
    @classmethod
    def _check_zoom(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(value, tuple):
            lo, hi = value
            if not (0 < lo <= hi <= 100):
                raise ValueError(f"expected [lower, upper] with 0 < lower <= upper, got {value!r}")
        elif not (0 <= value < 1):
            raise ValueError(f"expected a float in [0, 1) or [lower, upper], got {value!r}")
        return value

    @field_validator("brightness_range")
    @classmethod
    def _check_brightness(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (value[0] <= value[1] <= 100):
            raise ValueError(f"expected [lower, upper] with lower <= upper, got {list(value)!r}")
        return value

    @field_validator(
        "random_resized_crop_scale",
        "random_resized_crop_ratio",
        "erasing_scale",
        "erasing_ratio",
        "contrast_range",
        "saturation_range",
        "blur_sigma_range",
        "noise_std_range",
        "jpeg_quality_range",
    )
    @classmethod
    def _check_ordered(cls, value: tuple[float, float] | None, info: ValidationInfo) -> Any:
        if value is None:
            return value
        top = _RANGE_TOPS.get(info.field_name or "", math.inf)
        if not (value[0] <= value[1] <= top):
            bound = "" if math.isinf(top) else f" <= {top:g}"
            raise ValueError(
                f"expected [lower, upper] with lower <= upper{bound}, got {list(value)!r}"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"class names must be unique, got {value!r}")
        return value

    @field_validator("rescale", "cval", "channel_shift_range")
    @classmethod
    def _check_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> StreamSpec:
        arrays = self.arrays
        if arrays is None:
            if self.dataset is None:
                raise ValueError("dataset: name a dataset of the server (or give arrays)")
            if self.class_mode in ("raw", "multi_output"):
                raise ValueError(
                    f"class_mode={self.class_mode!r} takes its labels from arrays.y; "
                    "a dataset's class folders give categorical, binary or sparse labels"
                )
            return self
        if arrays.x is not None and self.dataset is not None:
            raise ValueError("arrays.x streams uploaded images: leave dataset unset")
        if arrays.filenames is not None and self.dataset is None:
            raise ValueError("arrays.filenames names files of a dataset: set dataset")
        if self.class_mode in _CLASS_MODES_WITH_LABELS and self.classes is None:
            raise ValueError(
                f"class_mode={self.class_mode!r} over arrays needs classes: the class names, "
                "in label order"
            )
        count = len(arrays.y)
        needed = {"multi_output": "at least one", "input": "no", "none": "no"}.get(
            self.class_mode, "exactly one"
        )
        if not {"exactly one": count == 1, "at least one": count >= 1, "no": count == 0}[needed]:
            raise ValueError(
                f"class_mode={self.class_mode!r} needs {needed} label array in arrays.y, "
                f"got {count}"
            )
        return self

    @model_validator(mode="after")
    def _check_operations(self) -> StreamSpec:
        if self.class_mode == "mask":
            if self.arrays is not None:
                raise ValueError(
                    "class_mode='mask' reads a dataset's images/ and masks/ folders; "
                    "it does not apply to arrays"
                )
            if self.classes is not None:
                raise ValueError(
                    "classes does not apply to class_mode='mask' (the classes are the "
                    "masks' pixel values); leave it unset"
                )
            if self.mixup_alpha:
                raise ValueError(
                    "mixup_alpha does not apply to class_mode='mask': a blend of two masks "
                    "is not a mask (cutmix_alpha is: it pastes the mask with the image)"
                )
        if (self.mixup_alpha or self.cutmix_alpha) and self.class_mode not in _MIXABLE:
            name = "mixup_alpha" if self.mixup_alpha else "cutmix_alpha"
            raise ValueError(
                f"{name} mixes labels, which needs class_mode 'categorical' or 'binary' "
                f"(or 'input', 'none', 'mask'); class_mode={self.class_mode!r} labels "
                "cannot be mixed"
            )
        if self.random_crop_fraction < 1 and self.random_resized_crop_scale is not None:
            raise ValueError(
                "random_crop_fraction and random_resized_crop_scale are two kinds of crop: "
                "set one of them"
            )
        if self.color_mode == "grayscale":
            for name, active in (
                ("saturation_range", self.saturation_range is not None),
                ("hue_shift_range", bool(self.hue_shift_range)),
                ("grayscale_probability", bool(self.grayscale_probability)),
            ):
                if active:
                    raise ValueError(
                        f"{name} changes colours; color_mode='grayscale' has none (use "
                        "color_mode='rgb' or 'rgba')"
                    )
        return self

    @model_validator(mode="after")
    def _resolve(self) -> StreamSpec:
        # As in Keras, std normalisation implies centring.
        if self.samplewise_std_normalization and not self.samplewise_center:
            object.__setattr__(self, "samplewise_center", True)
        # Keras' constructor: ZCA centres and replaces std normalisation; std implies centring.
        if self.zca_whitening:
            object.__setattr__(self, "featurewise_std_normalization", False)
        if self.zca_whitening or self.featurewise_std_normalization:
            object.__setattr__(self, "featurewise_center", True)
        self._check_stats()
        float_only = [
            name
            for name, active in (
                ("rescale", self.rescale not in (None, 0.0, 1.0)),
                ("samplewise_center", self.samplewise_center),
                ("featurewise_center", self.featurewise_center),
            )
            if active
        ]
        if self.dtype is None:
            object.__setattr__(self, "dtype", "float32" if float_only else "uint8")
        elif self.dtype == "uint8" and float_only:
            raise ValueError(
                f"dtype='uint8' cannot carry the result of {float_only[0]}; "
                "use dtype='float32' or leave dtype unset"
            )
        if self.subset is not None and not self.validation_split:
            raise ValueError(
                f"subset={self.subset!r} needs a validation_split in (0, 1), got "
                f"{self.validation_split}"
            )
        if self.epochs is not None and self.start.epoch >= self.epochs:
            raise ValueError(
                f"start.epoch must be < epochs ({self.epochs}), got {self.start.epoch}"
            )
        return self

    def _check_stats(self) -> None:
        stats = self.stats or StatsRefs()
        for name, flag in (
            ("mean", "featurewise_center"),
            ("std", "featurewise_std_normalization"),
            ("zca_whitening_matrix", "zca_whitening"),
        ):
            if getattr(stats, name) is not None and not getattr(self, flag):
                raise ValueError(f"stats.{name} is given but {flag} is off: set {flag}=True")

    @property
    def channels(self) -> int:
        """Channels per image for this spec's ``color_mode``."""
        return channels_for(self.color_mode)

    @property
    def output_dtype(self) -> str:
        """The resolved dtype of ``x`` (``dtype`` is never ``None`` after validation)."""
        return self.dtype or "uint8"

    def request_body(self) -> dict[str, Any]:
        """The spec as the JSON body of ``POST /v1/stream`` and ``/v1/files`` (defaults left
        out)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def with_start(self, epoch: int, batch: int, stride: int | None = None) -> StreamSpec:
        """The same stream, starting at ``(epoch, batch)`` (every ``stride``-th batch)."""
        changes: dict[str, Any] = {"start": {"epoch": epoch, "batch": batch}}
        if stride is not None:
            changes["stride"] = stride
        return self._updated(**changes)

    def with_seed(self, seed: int) -> StreamSpec:
        """The same stream with a fixed ``seed``."""
        return self._updated(seed=seed)

    def _updated(self, **changes: Any) -> StreamSpec:
        # model_copy(update=...) skips validation; a changed spec must be checked again.
        return StreamSpec.model_validate({**self.model_dump(), **changes})


def field_value(raw: str) -> Any:
    """A spec field's value written as text (a query parameter, ``--set NAME=VALUE``): JSON
    when it parses (``20``, ``true``, ``[0.9, 1.1]``), else the text itself (``reflect``)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
