"""Image sizes from headers: right for every format OpenCV writes, None (never an error) for
anything else, so the pixel limit can run before a decode."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from augstream_service.decode import DecodeError, decode_image
from augstream_service.imagesize import image_size
from tests.imagefolder import png_header

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (23, 37, 3), dtype=np.uint8)  # 37 wide, 23 high


@pytest.mark.parametrize(
    "extension", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".pbm"]
)
@pytest.mark.parametrize("lossless_webp", [False, True])
def test_sizes_match_what_opencv_wrote(extension: str, lossless_webp: bool) -> None:
    image = cv2.cvtColor(IMAGE, cv2.COLOR_BGR2GRAY) if extension in (".pgm", ".pbm") else IMAGE
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if lossless_webp and extension == ".webp" else []
    ok, encoded = cv2.imencode(extension, image, params)
    assert ok
    assert image_size(encoded.tobytes()) == (37, 23)


def test_progressive_jpeg_and_exif_segments_are_skipped() -> None:
    _, encoded = cv2.imencode(".jpg", IMAGE, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = encoded.tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 20) + b"Exif\x00\x00" + bytes(14)
    assert image_size(data[:2] + app1 + data[2:]) == (37, 23)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG",
        b"\xff\xd8\xff\xe0\x00",
        b"BM",
        b"RIFF",
        b"II*\x00\xff\xff\xff\xff",
        b"plain text",
        bytes(64),
    ],
)
def test_unknown_or_cut_short_headers_give_none(data: bytes) -> None:
    assert image_size(data) is None


def test_random_bytes_never_raise() -> None:
    for seed in range(300):
        rng = np.random.default_rng(seed)
        prefix = [b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8X", b""]
        data = prefix[seed % 5] + rng.integers(0, 256, seed % 97, dtype=np.uint8).tobytes()
        size = image_size(data)
        assert size is None or (isinstance(size[0], int) and isinstance(size[1], int))


def test_a_pixel_bomb_is_refused_before_decoding() -> None:
    bomb = png_header(100_000, 100_000) + b"\x00" * 100  # would decode to 10 GB
    with pytest.raises(DecodeError, match=r"100000x100000 = 10000000000 pixels.*at most 1000000"):
        decode_image(bomb, color_mode="rgb", target_size=(8, 8), max_pixels=1_000_000)
    _, encoded = cv2.imencode(".png", IMAGE)
    small = decode_image(encoded.tobytes(), color_mode="rgb", target_size=(8, 8), max_pixels=851)
    assert small.shape == (8, 8, 3)
    with pytest.raises(DecodeError, match="37x23 = 851 pixels"):
        decode_image(encoded.tobytes(), color_mode="rgb", target_size=(8, 8), max_pixels=850)
