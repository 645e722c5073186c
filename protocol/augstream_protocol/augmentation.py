"""How each sample is transformed: the augmentation half of a spec.

Keras' ``ImageDataGenerator`` parameters (same names, same defaults, same meaning;
``docs/users/keras-differences.md`` lists where augstream follows Keras' documentation
rather than its legacy code), its standardisation, and augstream's newer operations, each
off at its default. The docstring under each field is its description.
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
    """Degrees: each image is rotated by an angle drawn uniformly from ``(-r, r)``; 0: none."""
    width_shift_range: ShiftRange = 0.0
    """Horizontal shift: a float below 1 is a fraction of the width, a float of 1 or more
    pixels, an int ``n`` whole pixels in ``(-n, n)``, a list one of its values with a random
    sign; 0: none."""
    height_shift_range: ShiftRange = 0.0
    """Vertical shift, by the same rules as ``width_shift_range`` (fractions of the
    height); 0: none."""
    shear_range: Annotated[float, Field(ge=0, le=90)] = 0.0
    """Shear angle in degrees, counter-clockwise, drawn from ``(-s, s)``; 0: none."""
    zoom_range: float | tuple[float, float] = 0.0
    """A float ``z`` zooms within ``[1 - z, 1 + z]``, a pair within ``[lower, upper]``; the
    two axes are drawn apart, as in Keras (values above 1 zoom out). 0: none."""
    channel_shift_range: Annotated[float, Field(ge=0, le=255)] = 0.0
    """Pixel units: a shift drawn from ``(-c, c)`` added to every channel, clipped to the
    image's own range; 0: none."""
    brightness_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """``[lower, upper]``: each image's pixels are multiplied by a factor drawn from it (1
    unchanged) and clipped to [0, 255]. Unset: none."""
    fill_mode: FillMode = "nearest"
    """How the warp fills points outside the image: ``constant`` (``cval``), ``nearest``
    (``aaaa|abcd|dddd``), ``reflect`` (``dcba|abcd|dcba``) or ``wrap``
    (``abcd|abcd|abcd``)."""
    cval: Annotated[float, Field(ge=-1e6, le=1e6)] = 0.0
    """The value of points outside the image when ``fill_mode="constant"``."""
    horizontal_flip: bool = False
    """Flip each image left to right with probability 1/2."""
    vertical_flip: bool = False
    """Flip each image upside down with probability 1/2."""
    interpolation_order: Literal[0, 1, 3] = 1
    """The warp's interpolation: 0 nearest, 1 bilinear, 3 bicubic (Keras' spline orders;
    2, 4 and 5 are not offered)."""
    rescale: Annotated[float, Field(ge=-1e6, le=1e6)] | None = None
    """Multiply every pixel by this after all other per-sample transforms (``1 / 255``
    gives [0, 1]); unset or 0: no rescaling. Makes ``x`` float32."""
    samplewise_center: bool = False
    """Subtract each image's own mean from it."""
    samplewise_std_normalization: bool = False
    """Divide each image by its own standard deviation (implies ``samplewise_center``, as
    in Keras)."""
    # Keras' dataset-wide standardisation, applied after the sample-wise one with the
    # arrays named in ``stats`` (fit first: ImageDataGenerator.fit or POST /v1/stats).
    featurewise_center: bool = False
    """Subtract the dataset's mean (``stats.mean``, from ``fit``) from every image."""
    featurewise_std_normalization: bool = False
    """Divide every image by the dataset's standard deviation (``stats.std``); implies
    ``featurewise_center``, as in Keras."""
    zca_whitening: bool = False
    """Apply the dataset's ZCA whitening matrix (``stats.zca_whitening_matrix``); implies
    ``featurewise_center`` and replaces ``featurewise_std_normalization``, as in Keras."""
    stats: StatsRefs | None = None
    """The dataset statistics the featurewise flags apply, as digests of stored arrays
    (``POST /v1/stats`` returns them); unset when no featurewise flag is set."""

    # class_mode="mask": the masks' fill value where fill_mode="constant" leaves the image.
    mask_cval: Annotated[int, Field(ge=0, le=255)] = 0
    """``class_mode="mask"``: the class id of mask pixels the warp leaves empty under
    ``fill_mode="constant"`` (the image gets ``cval`` there)."""

    # Operations beyond ImageDataGenerator's (docs/users/operations.md); each is off at its
    # default, so a spec without them streams exactly what it did before they existed.
    random_crop_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Crop a window of this fraction of each side at a uniform position and resize it back
    to ``target_size``; 1: off. Not with ``random_resized_crop_scale``."""
    random_resized_crop_scale: UnitRange | None = None
    """``[lower, upper]`` area fractions: crop a window of a drawn area and aspect ratio
    (``random_resized_crop_ratio``) and resize it back. Unset: off."""
    random_resized_crop_ratio: tuple[PositiveFloat, PositiveFloat] = (3 / 4, 4 / 3)
    """The random resized crop's aspect ratio range, relative to the image's own, drawn
    log-uniformly."""
    erasing_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Random erasing (cutout): the probability that a box of the image is painted
    ``erasing_value``; 0: off."""
    erasing_scale: UnitRange = (0.02, 0.33)
    """The erased box's area, as a range of fractions of the image's."""
    erasing_ratio: tuple[PositiveFloat, PositiveFloat] = (0.3, 3.3)
    """The erased box's aspect ratio range, drawn log-uniformly."""
    erasing_value: Annotated[float, Field(ge=0, le=255)] = 0.0
    """The erased box's pixel value, in pixel units (0 to 255)."""
    contrast_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """``[lower, upper]`` factors: blend with the image's mean grey (1 unchanged, 0 flat
    grey). Unset: off."""
    saturation_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """``[lower, upper]`` factors: blend with each pixel's grey (0 grey, 2 vivid); colour
    modes only. Unset: off."""
    hue_shift_range: Annotated[float, Field(ge=0, le=180)] = 0.0
    """Degrees: a hue rotation drawn from ``(-h, h)``; colour modes only. 0: off."""
    grayscale_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    """The probability of replacing the image by its luma (BT.601) in all three channels;
    colour modes only. 0: off."""
    blur_sigma_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """``[lower, upper]``: a Gaussian blur's sigma in pixels (0: none). Unset: off."""
    noise_std_range: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    """``[lower, upper]``: the standard deviation of Gaussian noise added, in pixel units.
    Unset: off."""
    jpeg_quality_range: tuple[Quality, Quality] | None = None
    """``[lower, upper]`` (1 to 100): the image is encoded as JPEG at a drawn quality and
    decoded back; 8-bit images only. Unset: off."""
    mixup_alpha: Annotated[float, Field(ge=0, le=100)] = 0.0
    """Mixup: per batch, a weight drawn from Beta(alpha, alpha) blends the batch with a
    pairing of itself, pixels and labels; 0: off. Not with masks."""
    cutmix_alpha: Annotated[float, Field(ge=0, le=100)] = 0.0
    """CutMix: per batch, a weight drawn from Beta(alpha, alpha); a box of area
    ``1 - weight`` is pasted from a partner and labels mixed by the pixels kept; 0: off."""

    compat: Literal["documented", "keras-legacy"] = "documented"
    """``keras-legacy`` reproduces the legacy implementation where it departs from its own
    documentation (swapped shift axes, off-centre warps of non-square images, brightness
    through 8 bits), for users who must match old results."""

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
