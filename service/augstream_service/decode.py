"""Image bytes -> uint8 HxWxC at the target size, with flow_from_directory's semantics."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from augstream.spec import ColorMode, Interpolation

from .imagesize import image_size

__all__ = ["DecodeError", "INTERPOLATIONS", "centre_crop_to_aspect", "decode_image", "resize"]

# OpenCV's stubs type every result loosely; images here are uint8 HxWxC throughout.
Image = np.ndarray[Any, Any]

INTERPOLATIONS: dict[Interpolation, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "area": cv2.INTER_AREA,
    # PIL's "box" averages each output pixel's footprint, as OpenCV's INTER_AREA does.
    "box": cv2.INTER_AREA,
}


class DecodeError(ValueError):
    """The bytes are not an image OpenCV can decode."""


def _to_8bit(image: np.ndarray[Any, Any]) -> Image:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    # Float (e.g. EXR/TIFF) images: assume [0, 1] as OpenCV does when it converts them.
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


_FLAGS: dict[ColorMode, int] = {
    "grayscale": cv2.IMREAD_GRAYSCALE,
    "rgb": cv2.IMREAD_COLOR_RGB,
    "rgba": cv2.IMREAD_UNCHANGED,
}


def _read(data: bytes, color_mode: ColorMode) -> Image:
    if not data:
        raise DecodeError("not a decodable image (the file is empty)")
    # libjpeg decodes a cut-off JPEG with a warning and grey rows; PIL (so Keras) refuses it.
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-4096:]:
        raise DecodeError("truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _FLAGS[color_mode])
    except cv2.error as exc:
        # OpenCV raises (rather than returning None) for some malformed or oversized inputs.
        # Keep OpenCV's reason, not its source paths: "... error: (-215:...) reason".
        message = str(exc).strip().splitlines()[-1].rsplit(") ", 1)[-1]
        raise DecodeError(f"not a decodable image ({message})") from exc
    if image is None:
        raise DecodeError("not a decodable image (unknown format or corrupt data)")
    image = _to_8bit(image)
    if color_mode == "rgba":
        channels = 1 if image.ndim == 2 else image.shape[2]
        codes = {1: cv2.COLOR_GRAY2RGBA, 3: cv2.COLOR_BGR2RGBA, 4: cv2.COLOR_BGRA2RGBA}
        if channels not in codes:
            raise DecodeError(f"unsupported image with {channels} channels")
        code = codes[channels]
        image = cv2.cvtColor(image, code)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    return image


def centre_crop_to_aspect(image: Image, height: int, width: int) -> Image:
    """The largest centred crop of ``image`` with the aspect ratio ``width / height``."""
    h, w = image.shape[:2]
    crop_w = max(1, min(w, round(h * width / height)))
    crop_h = max(1, min(h, round(w * height / width)))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return image[top : top + crop_h, left : left + crop_w]


def resize(image: Image, height: int, width: int, interpolation: Interpolation) -> Image:
    """Resize to ``(height, width)``, keeping a channel axis even for one channel."""
    if image.shape[:2] == (height, width):
        return image
    out = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])
    return out if out.ndim == 3 else out[:, :, np.newaxis]


def decode_image(
    data: bytes,
    *,
    color_mode: ColorMode,
    target_size: tuple[int, int],
    interpolation: Interpolation = "nearest",
    keep_aspect_ratio: bool = False,
    max_pixels: int | None = None,
) -> Image:
    """Decode ``data`` to ``color_mode`` and resize it to ``target_size`` (height, width).

    With ``max_pixels``, an image whose header declares more pixels is refused before it is
    decoded (a small file can expand to gigabytes).
    """
    if max_pixels is not None:
        size = image_size(data)
        if size is not None and size[0] * size[1] > max_pixels:
            raise DecodeError(
                f"the image declares {size[0]}x{size[1]} = {size[0] * size[1]} pixels; this "
                f"server decodes at most {max_pixels}"
            )
    image = _read(data, color_mode)
    height, width = target_size
    if keep_aspect_ratio:
        image = centre_crop_to_aspect(image, height, width)
    return np.ascontiguousarray(resize(image, height, width, interpolation))
