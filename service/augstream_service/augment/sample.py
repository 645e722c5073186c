"""Draw one sample's transform parameters: the only place augmentation uses randomness."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from augstream_protocol.fields import ShiftRange
from augstream_protocol.spec import StreamSpec

from .params import IDENTITY, TransformParams

__all__ = ["is_off", "newer_on", "sample", "zoom_bounds"]


def _shift(rng: np.random.Generator, value: ShiftRange, size: int) -> float:
    """A shift in pixels following ImageDataGenerator's documented rules.

    A float below 1 is a fraction of ``size``, a float of 1 or more is pixels, an int ``n``
    picks whole pixels in (-n, n), a list picks one of its values with a random sign (and is
    a list of fractions when all its values are below 1).
    """
    if isinstance(value, list):
        shift = float(rng.choice(value)) * float(rng.choice([-1, 1]))
        return shift * size if max(value) < 1 else shift
    if isinstance(value, int) and not isinstance(value, bool):
        return float(rng.integers(0, value)) * float(rng.choice([-1, 1])) if value else 0.0
    if value == 0:
        return 0.0
    shift = float(rng.uniform(-value, value))
    return shift * size if value < 1 else shift


def zoom_bounds(spec: StreamSpec) -> tuple[float, float]:
    """The ``[lower, upper]`` zoom factors a spec draws from."""
    zoom = spec.zoom_range
    if isinstance(zoom, tuple):
        return zoom
    return 1 - zoom, 1 + zoom


def sample(rng: np.random.Generator, spec: StreamSpec, shape: tuple[int, ...]) -> TransformParams:
    """Draw a transform for an image of ``shape`` (height, width, ...) under ``spec``.

    Draws happen in ImageDataGenerator's order and only for enabled operations; each
    sample has a generator of its own (see ``sampling.sample_rng``), so the draws of one
    sample never depend on another's.
    """
    height, width = shape[0], shape[1]
    if is_off(spec):
        return IDENTITY
    theta = 0.0
    if spec.rotation_range:
        theta = float(rng.uniform(-spec.rotation_range, spec.rotation_range))
    if spec.compat == "keras-legacy":
        # Keras' own draw: the horizontal shift from height_shift_range scaled by the
        # height, then the vertical one from width_shift_range (tensorflow issue 82838).
        tx = _shift(rng, spec.height_shift_range, height)
        ty = _shift(rng, spec.width_shift_range, width)
    else:
        tx = _shift(rng, spec.width_shift_range, width)
        ty = _shift(rng, spec.height_shift_range, height)
    shear = float(rng.uniform(-spec.shear_range, spec.shear_range)) if spec.shear_range else 0.0
    lo, hi = zoom_bounds(spec)
    zx = zy = 1.0
    if not lo == hi == 1:
        zx, zy = (float(v) for v in rng.uniform(lo, hi, 2))
    flip_h = bool(rng.random() < 0.5) if spec.horizontal_flip else False
    flip_v = bool(rng.random() < 0.5) if spec.vertical_flip else False
    channel_shift = None
    if spec.channel_shift_range:
        channel_shift = float(rng.uniform(-spec.channel_shift_range, spec.channel_shift_range))
    brightness = None
    if spec.brightness_range is not None:
        brightness = float(rng.uniform(*spec.brightness_range))
    # The newer operations draw after all of ImageDataGenerator's, so turning one on leaves
    # the others' draws as they were.
    newer = _newer(rng, spec, height, width) if newer_on(spec) else {}
    return TransformParams(
        theta=theta,
        tx=tx,
        ty=ty,
        shear=shear,
        zx=zx,
        zy=zy,
        flip_horizontal=flip_h,
        flip_vertical=flip_v,
        channel_shift=channel_shift,
        brightness=brightness,
        **newer,
    )


def _range(rng: np.random.Generator, bounds: tuple[float, float] | None) -> float | None:
    return None if bounds is None else float(rng.uniform(*bounds))


def _newer(rng: np.random.Generator, spec: StreamSpec, height: int, width: int) -> dict[str, Any]:
    drawn: dict[str, Any] = {}
    if spec.random_crop_fraction < 1:
        f = spec.random_crop_fraction
        drawn["crop"] = _window(rng, height, width, width * f, height * f)
    elif spec.random_resized_crop_scale is not None:
        scale = float(rng.uniform(*spec.random_resized_crop_scale))
        # The ratio is drawn log-uniformly, as torchvision does, relative to the image's own.
        lo, hi = spec.random_resized_crop_ratio
        ratio = math.exp(float(rng.uniform(math.log(lo), math.log(hi))))
        crop_w = min(width, width * math.sqrt(scale * ratio))
        crop_h = min(height, height * math.sqrt(scale / ratio))
        drawn["crop"] = _window(rng, height, width, crop_w, crop_h)
    drawn["contrast"] = _range(rng, spec.contrast_range)
    drawn["saturation"] = _range(rng, spec.saturation_range)
    if spec.hue_shift_range:
        drawn["hue"] = float(rng.uniform(-spec.hue_shift_range, spec.hue_shift_range))
    if spec.grayscale_probability:
        drawn["grayscale"] = bool(rng.random() < spec.grayscale_probability)
    drawn["blur"] = _range(rng, spec.blur_sigma_range)
    if spec.noise_std_range is not None:
        # The pixels' noise comes from a seed drawn here, so apply stays pure.
        drawn["noise"] = (float(rng.uniform(*spec.noise_std_range)), int(rng.integers(2**63)))
    if spec.jpeg_quality_range is not None:
        lo_q, hi_q = spec.jpeg_quality_range
        drawn["jpeg_quality"] = int(rng.integers(lo_q, hi_q + 1))
    if spec.erasing_probability and rng.random() < spec.erasing_probability:
        drawn["erase"] = _erase_box(rng, spec, height, width)
    return drawn


def _window(
    rng: np.random.Generator, height: int, width: int, crop_w: float, crop_h: float
) -> tuple[float, float, float, float]:
    left = float(rng.uniform(0, width - crop_w))
    top = float(rng.uniform(0, height - crop_h))
    return (left, top, crop_w, crop_h)


def _erase_box(
    rng: np.random.Generator, spec: StreamSpec, height: int, width: int
) -> tuple[int, int, int, int]:
    """Random erasing's box (Zhong et al.): an area fraction and a log-uniform aspect ratio,
    cut to the image, at a uniform position; at least one pixel."""
    area = float(rng.uniform(*spec.erasing_scale)) * height * width
    lo, hi = spec.erasing_ratio
    ratio = math.exp(float(rng.uniform(math.log(lo), math.log(hi))))
    box_h = min(height, max(1, round(math.sqrt(area / ratio))))
    box_w = min(width, max(1, round(math.sqrt(area * ratio))))
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    return (top, left, box_h, box_w)


def newer_on(spec: StreamSpec) -> bool:
    """Whether any of the operations beyond Keras' is on (each draws after Keras' draws)."""
    return bool(
        spec.random_crop_fraction < 1
        or spec.random_resized_crop_scale is not None
        or spec.erasing_probability
        or spec.contrast_range is not None
        or spec.saturation_range is not None
        or spec.hue_shift_range
        or spec.grayscale_probability
        or spec.blur_sigma_range is not None
        or spec.noise_std_range is not None
        or spec.jpeg_quality_range is not None
    )


def is_off(spec: StreamSpec) -> bool:
    """Whether the spec draws no transform at all (every sample's is the identity)."""
    return not (
        spec.rotation_range
        or spec.width_shift_range
        or spec.height_shift_range
        or spec.shear_range
        or zoom_bounds(spec) != (1, 1)
        or spec.horizontal_flip
        or spec.vertical_flip
        or spec.channel_shift_range
        or spec.brightness_range is not None
        or newer_on(spec)
    )
