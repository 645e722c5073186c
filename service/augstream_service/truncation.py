"""Whether a JPEG's data is all there, though OpenCV decoded it without complaint.

libjpeg (inside OpenCV) decodes a JPEG whose data stops early with no more than a warning on
stderr: the blocks it has no data for keep what earlier scans gave them, which for a file
cut inside its first (or only) scan is nothing, a flat grey of exactly 128. A missing
end-of-image marker is easy to see; a file cut in half with ``FF D9`` appended is not, and
Keras (PIL) would read it as well. Two checks, neither costs a decode that is not needed:

- a progressive JPEG must finish every coefficient of every component (the scans' spectral
  ranges, refined down to the last bit): a file cut between scans lacks some (a walk over
  its markers, before decoding);
- an image whose last row ends in a run of pixels (a sixteenth of the row, or two) with a
  luma of 128, as blocks without data have, is decoded again with filler bytes before its
  end-of-image marker. A complete file never reads them as data (its scans end before
  them: libjpeg only says on stderr that it skipped them), so it decodes to the same
  pixels; a cut one decodes the filler as the missing data, so its pixels change. Of the
  benchmark's 1,000 photographs, none ends so; a single grey last pixel (one in a hundred)
  costs a look at the row.

What neither sees: a progressive JPEG cut inside its last scan (its blocks all have every
coefficient; the lower ones lack that scan's last bit of precision), and a baseline one cut
inside its last few blocks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from .imagesize import Header

__all__ = ["cut_short", "scans_incomplete"]

#: A bit pattern no complete scan reads; no 0xFF, so libjpeg sees no marker in it.
_FILLER = bytes(range(1, 255)) * 2
_ALL = (1 << 64) - 1
_SOS = b"\xff\xda"


def scans_incomplete(data: bytes, header: Header) -> bool:
    """Whether a progressive JPEG's scans leave a coefficient of a component unfinished
    (False for other JPEGs, and when the markers cannot be walked)."""
    if not header.progressive:
        return False
    try:
        components, at = _frame_components(data)
    except (struct.error, ValueError):
        return False
    if not components:
        return False
    done = dict.fromkeys(components, 0)
    at = data.find(_SOS, at)
    while at >= 0:
        try:
            (count,) = struct.unpack_from(">B", data, at + 4)
            ids = data[at + 5 : at + 5 + 2 * count : 2]
            start, end, approx = struct.unpack_from(">BBB", data, at + 5 + 2 * count)
        except struct.error:
            break
        if approx & 0x0F == 0 and start <= end < 64:  # the coefficients' last bit is in
            span = ((1 << (end + 1)) - 1) ^ ((1 << start) - 1)
            for component in ids:
                if component in done:
                    done[component] |= span
        # Entropy-coded data stuffs every 0xFF with 0x00: the next FF DA starts a scan.
        at = data.find(_SOS, at + 2)
    return any(mask != _ALL for mask in done.values())


def _frame_components(data: bytes) -> tuple[bytes, int]:
    """The component ids of the JPEG's frame header, and where the header ends."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ValueError("not at a marker")
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker in (0xC2, 0xC6, 0xCA, 0xCE):
            (count,) = struct.unpack_from(">B", data, at + 9)
            return data[at + 10 : at + 10 + 3 * count : 3], at + 2 + length
        at += 2 + length
    return b"", at


def cut_short(data: bytes, image: np.ndarray[Any, Any], decode: Callable[[bytes], Any]) -> bool:
    """Whether the JPEG ``data``, which ``decode`` (the same decode, flags and all) made
    ``image`` of, stopped before its last blocks."""
    if not _grey(image[-1, -1].tolist()):  # one pixel first: the row is rarely needed
        return False
    width = image.shape[1]
    if not _blank(image[-1, -max(2, width // 16) :]):
        return False
    end = data.rfind(b"\xff\xd9")
    if end < 0:
        return True
    again = decode(data[:end] + _FILLER + data[end:])
    return again is None or again.shape != image.shape or not np.array_equal(again, image)


def _grey(pixel: int | list[int]) -> bool:
    """``_blank`` for one pixel (an int, or a list of channels), in plain Python: it runs
    for every JPEG decoded, and numpy's calls cost more than the arithmetic."""
    if isinstance(pixel, int):
        return abs(pixel - 128) <= 1
    if len(pixel) == 1:
        return abs(pixel[0] - 128) <= 1
    first, green, last = pixel[:3]
    luma = 0.587 * green - 128
    return (
        abs(luma + 0.299 * first + 0.114 * last) <= 1
        or abs(luma + 0.114 * first + 0.299 * last) <= 1
    )


def _blank(pixels: np.ndarray[Any, Any]) -> bool:
    """Whether every one of a row's ``pixels`` may come from a block without data: a luma
    of 128 (colour comes from neighbouring blocks too, where chroma is subsampled). Decoded
    colour is RGB or BGR, so both orders are tried; libjpeg rounds each channel within half
    a level."""
    if pixels.ndim == 1 or pixels.shape[-1] == 1:
        return bool((np.abs(pixels.astype(np.int16) - 128) <= 1).all())
    colour = pixels[..., :3].astype(np.float32)
    green = 0.587 * colour[..., 1] - 128
    rgb = np.abs(green + 0.299 * colour[..., 0] + 0.114 * colour[..., 2]) <= 1
    bgr = np.abs(green + 0.114 * colour[..., 0] + 0.299 * colour[..., 2]) <= 1
    return bool(rgb.all() or bgr.all())
