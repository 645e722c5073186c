"""An image's width and height from its first bytes, without decoding it.

Lets the server refuse a decompression bomb (a small file that decodes to gigabytes) before
OpenCV allocates anything. Formats OpenCV reads and this module does not know fall back to
OpenCV's own pixel limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, set before OpenCV is imported).
"""

from __future__ import annotations

import re
import struct

__all__ = ["image_size"]

# JPEG start-of-frame markers: 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNM = re.compile(rb"P[1-6](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")


def _jpeg(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        at += 2 + length
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack_from("<I", data, 21)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (entries,) = struct.unpack_from(order + "H", data, ifd)
    found: dict[int, int] = {}
    for n in range(entries):
        at = ifd + 2 + 12 * n
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength
            fmt = order + ("H" if kind == 3 else "I")
            (found[tag],) = struct.unpack_from(fmt, data, at + 8)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` that the image in ``data`` declares, or None when the format is
    not one of PNG, JPEG, GIF, BMP, WebP, TIFF and PNM, or the header is cut short."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return width, height
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return width, height
        if data[:2] == b"BM":
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        match = _PNM.match(data[:512])
        if match:
            return int(match.group(1)), int(match.group(2))
    except struct.error:
        return None
    return None
