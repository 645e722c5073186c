"""Image bytes -> uint8 HxWxC at the target size, with flow_from_directory's semantics."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from augstream_protocol.fields import ColorMode, Interpolation

from .imagesize import Header, image_header
from .truncation import cut_short, scans_incomplete

__all__ = [
    "DecodeError",
    "INTERPOLATIONS",
    "centre_crop_to_aspect",
    "decode_image",
    "reduction",
    "resize",
]

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


# libjpeg decodes straight to 1/2, 1/4 or 1/8 scale (it skips the high DCT frequencies), at a
# fraction of the cost; OpenCV's reduced flags carry BGR, so the colour bit is swapped for RGB.
_REDUCED: dict[ColorMode, dict[int, int]] = {
    "grayscale": {
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    },
    "rgb": {
        k: (flag & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB
        for k, flag in (
            (2, cv2.IMREAD_REDUCED_COLOR_2),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (8, cv2.IMREAD_REDUCED_COLOR_8),
        )
    },
}


def reduction(
    data: bytes,
    color_mode: ColorMode,
    target_size: tuple[int, int],
    header: Header | None = None,
) -> int:
    """The largest of 1, 2, 4 and 8 that a JPEG can be decoded at (1/k scale) and still be at
    least ``target_size`` in both directions, whichever way its EXIF orientation turns it
    (so also after a ``keep_aspect_ratio`` crop). ``header``: ``image_header(data)``, when
    known."""
    if color_mode not in _REDUCED or data[:3] != b"\xff\xd8\xff":
        return 1
    header = header or image_header(data)
    if header is None:
        return 1
    shortest, needed = min(header.width, header.height), max(target_size)
    return next((k for k in (8, 4, 2) if shortest // k >= needed), 1)


def _imdecode(data: bytes, flags: int) -> Image | None:
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        # OpenCV raises (rather than returning None) for some malformed or oversized inputs.
        # Keep OpenCV's reason, not its source paths: "... error: (-215:...) reason".
        message = str(exc).strip().splitlines()[-1].rsplit(") ", 1)[-1]
        raise DecodeError(f"not a decodable image ({message})") from exc


def _read(
    data: bytes, color_mode: ColorMode, scale: int = 1, header: Header | None = None
) -> Image:
    if not data:
        raise DecodeError("not a decodable image (the file is empty)")
    # libjpeg decodes a cut-off JPEG with a warning and grey blocks; PIL (so Keras) refuses
    # one without its end marker. With the marker, the scans tell (``truncation``).
    jpeg = data[:3] == b"\xff\xd8\xff"
    if jpeg and b"\xff\xd9" not in data[-4096:]:
        raise DecodeError("truncated JPEG (no end-of-image marker)")
    if jpeg and header is not None and scans_incomplete(data, header):
        raise DecodeError("truncated JPEG (its progressive scans stop before the last)")
    flags = _FLAGS[color_mode] if scale == 1 else _REDUCED[color_mode][scale]
    image = _imdecode(data, flags)
    if image is None:
        raise DecodeError("not a decodable image (unknown format or corrupt data)")
    if jpeg and cut_short(data, image, lambda again: _imdecode(again, flags)):
        raise DecodeError("truncated JPEG (its data stops before the last block)")
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


_MODE_CHANNELS: dict[ColorMode, int] = {"grayscale": 1, "rgb": 3, "rgba": 4}


def _check_size(
    header: Header, color_mode: ColorMode, max_pixels: int | None, max_bytes: int | None
) -> None:
    width, height = header.width, header.height
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(
            f"the image declares {width}x{height} = {width * height} pixels; this "
            f"server decodes at most {max_pixels}"
        )
    channels = max(header.channels, _MODE_CHANNELS[color_mode])
    decoded = width * height * channels * header.depth
    if max_bytes is not None and decoded > max_bytes:
        raise DecodeError(
            f"the image declares {width}x{height} pixels of {channels} channels at "
            f"{8 * header.depth} bits = {decoded} bytes decoded; this server decodes at "
            f"most {max_bytes} bytes"
        )


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
    max_bytes: int | None = None,
    reduce: bool = True,
) -> Image:
    """Decode ``data`` to ``color_mode`` and resize it to ``target_size`` (height, width).

    With ``max_pixels`` and ``max_bytes``, an image whose header declares more pixels, or
    more decoded bytes (width x height x channels x bytes per channel, at least the colour
    mode's channels), is refused before it is decoded (a small file can expand to
    gigabytes). With ``reduce``, a JPEG at least twice the target in both directions is
    decoded at a reduced scale (``reduction``) before the resize: several times faster, and
    the scaled decode averages pixels, so it also aliases less than resizing from full size
    with ``nearest``.
    """
    header = image_header(data)
    if header is not None:
        _check_size(header, color_mode, max_pixels, max_bytes)
    scale = reduction(data, color_mode, target_size, header) if reduce else 1
    image = _read(data, color_mode, scale, header)
    height, width = target_size
    if keep_aspect_ratio:
        image = centre_crop_to_aspect(image, height, width)
    return np.ascontiguousarray(resize(image, height, width, interpolation))
