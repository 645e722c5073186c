"""Draw one sample's transform parameters: the only place augmentation uses randomness."""

from __future__ import annotations

import numpy as np

from augstream.spec import ShiftRange, StreamSpec

from .params import IDENTITY, TransformParams

__all__ = ["sample"]


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


def _zoom_bounds(spec: StreamSpec) -> tuple[float, float]:
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
    if _is_off(spec):
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
    lo, hi = _zoom_bounds(spec)
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
    )


def _is_off(spec: StreamSpec) -> bool:
    return not (
        spec.rotation_range
        or spec.width_shift_range
        or spec.height_shift_range
        or spec.shear_range
        or _zoom_bounds(spec) != (1, 1)
        or spec.horizontal_flip
        or spec.vertical_flip
        or spec.channel_shift_range
        or spec.brightness_range is not None
    )
