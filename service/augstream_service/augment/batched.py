"""A batch's transforms drawn and composed at once: bit for bit what ``sample`` and
``affine_matrix`` give one sample at a time, with the Python per image taken out.

``draw`` reads every sample's own stream (``streams.SampleStreams``, the same PCG64 streams
``sampling.sample_rng`` makes) in the order ``sample`` draws, for the operations whose draws
are plain doubles: rotation, shifts given as fractions or pixels, shear, zoom, flips,
channel shift and brightness (Keras' whole set but shifts given as whole pixels or as
lists). ``matrices`` builds the batch's affine matrices with the same products, stacked, so
each is the very matrix ``affine_matrix`` returns. Specs outside that set (``eligible`` says)
are drawn one sample at a time as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

from .params import IDENTITY, TransformParams
from .sample import is_off, newer_on, zoom_bounds
from .streams import SampleStreams

__all__ = ["draw", "eligible", "matrices"]

Floats = np.ndarray[Any, np.dtype[np.float64]]


def _plain(value: Any) -> bool:
    """A shift range whose draw is one double (a fraction or pixels), or none at all."""
    return isinstance(value, float) or (isinstance(value, int) and value == 0)


def eligible(spec: StreamSpec) -> bool:
    """Whether ``draw`` gives this spec's transforms."""
    return not newer_on(spec) and _plain(spec.width_shift_range) and _plain(spec.height_shift_range)


def _shift(streams: SampleStreams, value: int | float, size: int, count: int) -> Floats:
    if value == 0:
        return np.zeros(count)
    shift = streams.uniform(-float(value), float(value))
    return shift * size if value < 1 else shift


def draw(
    spec: StreamSpec, key: int, seed: int, epoch: int, ids: Sequence[int], shape: tuple[int, ...]
) -> list[TransformParams]:
    """``[sample(sample_rng(seed, epoch, i), spec, shape) for i in ids]`` for an
    ``eligible`` spec, drawn together (``key`` is ``sampling``'s key of sample streams)."""
    count = len(ids)
    if is_off(spec) or not count:
        return [IDENTITY] * count
    height, width = shape[0], shape[1]
    streams = SampleStreams(key, seed, epoch, ids)
    zeros = np.zeros(count)
    theta = zeros
    if spec.rotation_range:
        theta = streams.uniform(-spec.rotation_range, spec.rotation_range)
    horizontal, vertical = spec.width_shift_range, spec.height_shift_range
    if isinstance(horizontal, list) or isinstance(vertical, list):
        raise ValueError("shifts drawn from lists are drawn one sample at a time")
    if spec.compat == "keras-legacy":
        tx = _shift(streams, vertical, height, count)
        ty = _shift(streams, horizontal, width, count)
    else:
        tx = _shift(streams, horizontal, width, count)
        ty = _shift(streams, vertical, height, count)
    shear = zeros
    if spec.shear_range:
        shear = streams.uniform(-spec.shear_range, spec.shear_range)
    lo, hi = zoom_bounds(spec)
    zx = zy = np.ones(count)
    if not lo == hi == 1:
        zx, zy = streams.uniform(lo, hi), streams.uniform(lo, hi)
    flip_h = streams.doubles() < 0.5 if spec.horizontal_flip else np.zeros(count, bool)
    flip_v = streams.doubles() < 0.5 if spec.vertical_flip else np.zeros(count, bool)
    channel: list[float | None] = [None] * count
    if spec.channel_shift_range:
        channel = streams.uniform(-spec.channel_shift_range, spec.channel_shift_range).tolist()
    brightness: list[float | None] = [None] * count
    if spec.brightness_range is not None:
        brightness = streams.uniform(*spec.brightness_range).tolist()
    return [
        TransformParams(
            theta=t,
            tx=x,
            ty=y,
            shear=s,
            zx=a,
            zy=b,
            flip_horizontal=h,
            flip_vertical=v,
            channel_shift=c,
            brightness=g,
        )
        for t, x, y, s, a, b, h, v, c, g in zip(
            theta.tolist(),
            tx.tolist(),
            ty.tolist(),
            shear.tolist(),
            zx.tolist(),
            zy.tolist(),
            flip_h.tolist(),
            flip_v.tolist(),
            channel,
            brightness,
            strict=True,
        )
    ]


def _stacked(count: int, entries: dict[tuple[int, int], Any]) -> Floats:
    matrix = np.zeros((count, 3, 3))
    for (row, column), value in entries.items():
        matrix[:, row, column] = value
    return matrix


def matrices(
    params: Sequence[TransformParams], height: int, width: int, *, legacy_centre: bool = False
) -> Floats:
    """Every ``affine_matrix(p, height, width)`` (N x 2 x 3), from the same products in the
    same order: numpy multiplies each stacked 3 x 3 pair as it multiplies one. Transforms
    with a crop window are not composed here (``draw`` never makes one)."""
    count = len(params)
    if any(p.crop is not None for p in params):
        raise ValueError("crop windows are composed one sample at a time")
    # math's cos and sin, as affine_matrix uses (numpy's may round otherwise).
    turns = [math.radians(p.theta) for p in params]
    shears = [math.radians(p.shear) for p in params]
    cos, sin = np.array([math.cos(t) for t in turns]), np.array([math.sin(t) for t in turns])
    rotation = _stacked(count, {(0, 0): cos, (0, 1): -sin, (1, 0): sin, (1, 1): cos, (2, 2): 1.0})
    shift = _stacked(
        count,
        {
            (0, 0): 1.0,
            (1, 1): 1.0,
            (2, 2): 1.0,
            (0, 2): np.array([p.tx for p in params]),
            (1, 2): np.array([p.ty for p in params]),
        },
    )
    shear = _stacked(
        count,
        {
            (0, 0): 1.0,
            (0, 1): -np.array([math.sin(s) for s in shears]),
            (1, 1): np.array([math.cos(s) for s in shears]),
            (2, 2): 1.0,
        },
    )
    zoom = _stacked(
        count,
        {
            (0, 0): np.array([p.zx for p in params]),
            (1, 1): np.array([p.zy for p in params]),
            (2, 2): 1.0,
        },
    )
    matrix = rotation @ shift @ shear @ zoom
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    if legacy_centre:
        cx, cy = cy, cx
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    from_centre = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=np.float64)
    matrix = from_centre @ matrix @ to_centre
    flip_h = np.array([p.flip_horizontal for p in params], dtype=bool)
    flip_v = np.array([p.flip_vertical for p in params], dtype=bool)
    if flip_h.any():
        flip = np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
        matrix[flip_h] = matrix[flip_h] @ flip
    if flip_v.any():
        flip = np.array([[1, 0, 0], [0, -1, height - 1], [0, 0, 1]], dtype=np.float64)
        matrix[flip_v] = matrix[flip_v] @ flip
    result: Floats = matrix[:, :2]
    return result
