"""The newer photometric operations: pure functions of an image and drawn parameters.

Images are float32 HxWxC in pixel units (0 to 255 for decoded images); colour operations
read the channels as RGB and leave an alpha channel alone. Each operation at its neutral
value (factor 1, shift 0, sigma 0) returns its input unchanged, bit for bit.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .params import TransformParams

__all__ = ["adjust", "has_photometric"]

Array = np.ndarray[Any, Any]

# ITU-R BT.601 luma, the weights OpenCV and PIL use for RGB -> grey.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def has_photometric(params: TransformParams) -> bool:
    """Whether ``params`` carry any of the newer photometric operations."""
    return (
        params.contrast is not None
        or params.saturation is not None
        or params.hue is not None
        or params.grayscale
        or params.blur is not None
        or params.noise is not None
        or params.jpeg_quality is not None
        or params.erase is not None
    )


def _grey(colour: Array) -> Array:
    if colour.shape[2] == 1:
        return colour
    grey: Array = colour @ _LUMA
    return grey[:, :, np.newaxis]


def _contrast(colour: Array, factor: float) -> Array:
    # Blend with the mean grey level, as torchvision's adjust_contrast does.
    mean = np.float32(_grey(colour).mean())
    out: Array = np.clip(mean + np.float32(factor) * (colour - mean), 0.0, 255.0)
    return out


def _saturation(colour: Array, factor: float) -> Array:
    grey = _grey(colour)
    return np.clip(grey + np.float32(factor) * (colour - grey), 0.0, 255.0)


def _hue(colour: Array, degrees: float) -> Array:
    # OpenCV's float HSV has hue in [0, 360) and takes RGB in [0, 1].
    hsv = cv2.cvtColor(np.clip(colour, 0.0, 255.0) / np.float32(255), cv2.COLOR_RGB2HSV)
    hsv[:, :, 0] = np.mod(hsv[:, :, 0] + np.float32(degrees), np.float32(360))
    rgb: Array = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * np.float32(255)
    return rgb


def _blur(colour: Array, sigma: float) -> Array:
    blurred = cv2.GaussianBlur(colour, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred if blurred.ndim == 3 else blurred[:, :, np.newaxis]


def _noise(colour: Array, std: float, seed: int) -> Array:
    rng = np.random.Generator(np.random.PCG64(seed))
    noise = rng.standard_normal(colour.shape, dtype=np.float32)
    return np.clip(colour + np.float32(std) * noise, 0.0, 255.0)


def _jpeg(colour: Array, quality: int) -> Array:
    pixels = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    # JPEG's colour transform expects BGR: without the swap red and blue would trade luma.
    bgr = pixels if pixels.shape[2] == 1 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image of 1 or 3 channels
        raise RuntimeError("OpenCV could not encode a JPEG")
    flag = cv2.IMREAD_GRAYSCALE if pixels.shape[2] == 1 else cv2.IMREAD_COLOR_RGB
    decoded = cv2.imdecode(data, flag)
    if decoded is None:  # pragma: no cover - OpenCV decodes what it just encoded
        raise RuntimeError("OpenCV could not decode its own JPEG")
    return decoded.reshape(colour.shape).astype(np.float32)


def adjust(x: Array, params: TransformParams, *, erase_value: float = 0.0) -> Array:
    """``x`` (float32 HxWxC, pixel units) with the newer photometric operations applied, in
    a fixed order: contrast, saturation, hue, grey, blur, noise, JPEG, erasing (painted
    with ``erase_value``). ``x`` itself is never written to."""
    channels = x.shape[2]
    colour = np.ascontiguousarray(x[:, :, : 3 if channels >= 3 else 1])
    if params.contrast is not None and params.contrast != 1:
        colour = _contrast(colour, params.contrast)
    if params.saturation is not None and params.saturation != 1:
        colour = _saturation(colour, params.saturation)
    if params.hue is not None and params.hue != 0:
        colour = _hue(colour, params.hue)
    if params.grayscale and colour.shape[2] == 3:
        colour = np.repeat(_grey(colour), 3, axis=2)
    if params.blur is not None and params.blur > 0:
        colour = _blur(colour, params.blur)
    if params.noise is not None and params.noise[0] > 0:
        colour = _noise(colour, *params.noise)
    if params.jpeg_quality is not None:
        colour = _jpeg(colour, params.jpeg_quality)
    if params.erase is not None:
        top, left, height, width = params.erase
        if np.shares_memory(colour, x):
            colour = colour.copy()
        colour[top : top + height, left : left + width] = np.float32(erase_value)
    if channels == 4:
        return np.concatenate([colour, x[:, :, 3:]], axis=2)
    return colour
