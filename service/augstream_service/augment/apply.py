"""Apply drawn parameters to an image: pure, deterministic, no randomness."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from augstream_protocol.fields import FillMode
from augstream_protocol.spec import StreamSpec

from .geometry import affine_matrix, is_identity
from .params import TransformParams
from .photometric import adjust, has_photometric

__all__ = ["BORDER_MODES", "apply", "apply_mask", "standardize", "warp"]

Array = np.ndarray[Any, Any]

# SciPy's modes as Keras uses them, in OpenCV's terms: reflect is abcd|dcba (not REFLECT_101).
BORDER_MODES: dict[FillMode, int] = {
    "constant": cv2.BORDER_CONSTANT,
    "nearest": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "wrap": cv2.BORDER_WRAP,
}
_ORDERS = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}


def warp(
    image: Array,
    params: TransformParams,
    *,
    fill_mode: FillMode = "nearest",
    cval: float = 0.0,
    order: int = 1,
    legacy_centre: bool = False,
    matrix: Array | None = None,
    out: Array | None = None,
) -> Array:
    """All of ``params``' geometry in one ``cv2.warpAffine`` (or none when it is the
    identity). ``matrix``: ``affine_matrix(params, ...)`` made already (``batched``);
    ``out``: where to write the result, when it has the image's shape and dtype (a batch's
    slot: no copy)."""
    if is_identity(params):
        return image
    height, width = image.shape[:2]
    if matrix is None:
        matrix = affine_matrix(params, height, width, legacy_centre=legacy_centre)
    if out is not None and (out.shape != image.shape or out.dtype != image.dtype):
        out = None
    warped = cv2.warpAffine(
        image,
        matrix,
        (width, height),
        dst=out,
        flags=_ORDERS[order] | cv2.WARP_INVERSE_MAP,
        borderMode=BORDER_MODES[fill_mode],
        borderValue=(cval, cval, cval, cval),
    )
    if out is not None:
        return out
    return warped if warped.ndim == 3 else warped[:, :, np.newaxis]


def _photometric(image: Array, params: TransformParams, legacy: bool) -> Array:
    x = image.astype(np.float32)
    if params.channel_shift is not None:
        # One offset for every channel, clipped to the image's own range, as Keras does.
        x = np.clip(x + np.float32(params.channel_shift), x.min(), x.max())
    if params.brightness is not None:
        if legacy:
            # Keras goes through an 8-bit PIL image: truncate, scale, round to 8 bits.
            x = np.rint(np.clip(np.trunc(x) * np.float32(params.brightness), 0.0, 255.0))
        else:
            x = np.clip(x * np.float32(params.brightness), 0.0, 255.0)
    return x


def standardize(x: Array, spec: StreamSpec) -> Array:
    """Keras' ``standardize`` order: rescale, then per-sample centring and scaling."""
    if spec.rescale:
        x = x * np.float32(spec.rescale)
    if spec.samplewise_center:
        x = x - x.mean(dtype=np.float32)
    if spec.samplewise_std_normalization:
        x = x / (x.std(dtype=np.float32) + np.float32(1e-6))
    return x


def apply(
    image: Array,
    params: TransformParams,
    spec: StreamSpec,
    out: Array,
    matrix: Array | None = None,
) -> None:
    """Transform ``image`` (uint8 HxWxC) and write the result into ``out`` (spec's dtype);
    ``matrix`` is ``params``' affine matrix when it was made already.

    Geometry runs on uint8 (OpenCV's fastest path); photometric operations and
    standardisation run in float32 and are rounded back only when the output is uint8.
    """
    legacy = spec.compat == "keras-legacy"
    photometric = (
        params.channel_shift is not None or params.brightness is not None
    ) or has_photometric(params)
    x: Array = warp(
        image,
        params,
        fill_mode=spec.fill_mode,
        cval=spec.cval,
        order=spec.interpolation_order,
        legacy_centre=legacy,
        matrix=matrix,
        # Straight into the batch when nothing follows the warp.
        out=out if out.dtype == np.uint8 and not photometric else None,
    )
    if params.channel_shift is not None or params.brightness is not None:
        x = _photometric(x, params, legacy)
    if has_photometric(params):
        x = adjust(x.astype(np.float32, copy=False), params, erase_value=spec.erasing_value)
    if out.dtype == np.uint8:
        if x is out:
            return
        if x.dtype == np.uint8:
            out[...] = x
        else:
            np.clip(np.rint(x), 0, 255, out=x)
            out[...] = x
        return
    out[...] = standardize(x.astype(np.float32, copy=False), spec)


def apply_mask(
    mask: Array,
    params: TransformParams,
    spec: StreamSpec,
    out: Array,
    matrix: Array | None = None,
) -> None:
    """The image's geometry (the same matrix) applied to its mask (uint8 HxWx1), with
    nearest-neighbour sampling so class ids stay class ids, ``mask_cval`` where
    ``fill_mode="constant"`` leaves the image, and no photometric operation."""
    warped = warp(
        mask,
        params,
        fill_mode=spec.fill_mode,
        cval=spec.mask_cval,
        order=0,
        legacy_centre=spec.compat == "keras-legacy",
        matrix=matrix,
        out=out,
    )
    if warped is not out:
        out[...] = warped
