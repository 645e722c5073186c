"""How each sample is transformed: the augmentation half of a spec.

Keras' ``ImageDataGenerator`` parameters (same names, same defaults, same meaning; the
README lists where augstream follows Keras' documentation rather than its legacy code),
its standardisation, and augstream's newer operations, each off at its default.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationInfo,
    field_validator,
)

from .fields import MAX_SIDE, FillMode, Frozen, Quality, ShiftRange, StatsRefs, UnitRange

__all__ = ["Augmentation"]

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


class Augmentation(Frozen):
    """The fields that draw and apply each sample's random transform."""

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

    @field_validator("rescale", "cval", "channel_shift_range")
    @classmethod
    def _check_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return value
