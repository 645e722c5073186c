"""An image's width and height, channels and bytes per channel from its first bytes,
without decoding it.

Lets the server refuse a decompression bomb (a small file that decodes to gigabytes: many
pixels, or 16-bit samples and an alpha channel) before OpenCV allocates anything. Formats
OpenCV reads and this module does not know fall back to OpenCV's own pixel limit
(``OPENCV_IO_MAX_IMAGE_PIXELS``, set before OpenCV is imported).
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

__all__ = ["Header", "image_header", "image_size"]


class Header(NamedTuple):
    """What an image's header declares. ``channels`` and ``depth`` (bytes per channel) are
    those of the largest buffer its decoder may fill (a palette counts as RGBA); for a
    JPEG, ``progressive`` says whether its data comes in several scans."""

    width: int
    height: int
    channels: int
    depth: int
    progressive: bool = False

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded image: width x height x channels x bytes per channel."""
        return self.width * self.height * self.channels * self.depth


# JPEG start-of-frame markers: 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC); of them,
# the progressive ones.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_PNM = re.compile(
    rb"P([1-6])(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)(?:(?:\s|#[^\n]*\n)+(\d+))?"
)
#: Colour type -> channels, for PNG (a palette may carry transparency: RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def _jpeg(data: bytes) -> Header | None:
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
            precision, height, width, components = struct.unpack_from(">BHHB", data, at + 4)
            depth = 2 if precision > 8 else 1
            return Header(width, height, components, depth, marker in _PROGRESSIVE)
        at += 2 + length
    return None


def _png(data: bytes) -> Header:
    width, height, bits, colour = struct.unpack_from(">IIBB", data, 16)
    return Header(width, height, _PNG_CHANNELS.get(colour, 4), 2 if bits > 8 else 1)


def _webp(data: bytes) -> Header | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return Header(width & 0x3FFF, height & 0x3FFF, 3, 1)
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack_from("<I", data, 21)
        return Header(1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), 4, 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return Header(width, height, 4 if data[20] & 0x10 else 3, 1)
    return None


def _tiff(data: bytes) -> Header | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return None
    (entries,) = struct.unpack_from(order + "H", data, ifd)
    # ImageWidth, ImageLength, BitsPerSample (the first sample's), SamplesPerPixel
    found: dict[int, int] = {258: 1, 277: 1}
    for n in range(entries):
        at = ifd + 2 + 12 * n
        if at + 12 > len(data):
            break
        tag, kind, count = struct.unpack_from(order + "HHI", data, at)
        if tag in (256, 257, 258, 277):
            fmt = order + ("H" if kind == 3 else "I")
            # A value that does not fit the entry's 4 bytes lies at the offset they hold.
            where = at + 8
            if count * struct.calcsize(fmt) > 4:
                (where,) = struct.unpack_from(order + "I", data, at + 8)
            (found[tag],) = struct.unpack_from(fmt, data, where)
    if 256 in found and 257 in found:
        return Header(found[256], found[257], found[277], max(1, (found[258] + 7) // 8))
    return None


def _pnm(match: re.Match[bytes]) -> Header:
    kind, maxval = match.group(1), int(match.group(4) or 1)
    channels = 3 if kind in (b"3", b"6") else 1
    return Header(int(match.group(2)), int(match.group(3)), channels, 2 if maxval > 255 else 1)


def image_header(data: bytes) -> Header | None:
    """What the image in ``data`` declares, or None when the format is not one of PNG,
    JPEG, GIF, BMP, WebP, TIFF and PNM, or the header is cut short."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return _png(data)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return Header(width, height, 4, 1)
        if data[:2] == b"BM":
            width, height, _, bits = struct.unpack_from("<iiHH", data, 18)
            return Header(abs(width), abs(height), 4 if bits == 32 else 3, 1)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        match = _PNM.match(data[:512])
        if match:
            return _pnm(match)
    except struct.error:
        return None
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` that the image in ``data`` declares (``image_header``'s)."""
    header = image_header(data)
    return None if header is None else (header.width, header.height)
