"""Compose rotation, shift, shear, zoom and flips into one 2x3 affine matrix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .params import TransformParams

__all__ = ["affine_matrix", "is_identity"]

Matrix = np.ndarray[Any, np.dtype[np.float64]]


def _rotation(theta_deg: float) -> Matrix:
    t = math.radians(theta_deg)
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def _crop(window: tuple[float, float, float, float], height: int, width: int) -> Matrix:
    """Output pixel centres of a ``width`` x ``height`` image -> the source ``window``."""
    left, top, crop_w, crop_h = window
    sx, sy = crop_w / width, crop_h / height
    return np.array([[sx, 0, left + 0.5 * sx - 0.5], [0, sy, top + 0.5 * sy - 0.5], [0, 0, 1]])


def affine_matrix(
    params: TransformParams, height: int, width: int, *, legacy_centre: bool = False
) -> Matrix:
    """The output-to-input map (x = column, y = row) that ``cv2.warpAffine`` takes with
    ``WARP_INVERSE_MAP``.

    The product R . T . Shear . Zoom is Keras' own, centred on the image centre
    ((w - 1) / 2, (h - 1) / 2); the flips are applied to the output afterwards, so they sit
    on the right of the product, and the crop window (if any) on the left.
    ``legacy_centre`` reproduces Keras' centre, which swaps height and width (off-centre for
    non-square images).
    """
    shear = math.radians(params.shear)
    matrix = (
        _rotation(params.theta)
        @ np.array([[1, 0, params.tx], [0, 1, params.ty], [0, 0, 1]])
        @ np.array([[1, -math.sin(shear), 0], [0, math.cos(shear), 0], [0, 0, 1]])
        @ np.array([[params.zx, 0, 0], [0, params.zy, 0], [0, 0, 1]])
    )
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    if legacy_centre:
        cx, cy = cy, cx
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    from_centre = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
    matrix = from_centre @ matrix @ to_centre
    if params.flip_horizontal:
        matrix = matrix @ np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]])
    if params.flip_vertical:
        matrix = matrix @ np.array([[1, 0, 0], [0, -1, height - 1], [0, 0, 1]])
    if params.crop is not None:
        # The crop comes first on the way from source to output, so last on the way back.
        matrix = _crop(params.crop, height, width) @ matrix
    result: Matrix = matrix[:2]
    return result


def is_identity(params: TransformParams) -> bool:
    """True when ``params`` move no pixel, so the warp (and its matrix) can be skipped.

    Checked on the parameters, not the matrix: it runs once per sample on the hot path.
    """
    return (
        params.theta == 0
        and params.tx == 0
        and params.ty == 0
        and params.shear == 0
        and params.zx == 1
        and params.zy == 1
        and not params.flip_horizontal
        and not params.flip_vertical
        and params.crop is None
    )
