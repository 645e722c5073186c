"""Images that would cost or mislead more than they look: a JPEG cut short with its end marker
put back is refused (baseline or progressive, at every decode scale and colour mode) while
complete ones, grey corners included, decode as before; and the decoded-bytes limit counts
channels and bit depth from the header."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from augstream_service.decode import DecodeError, decode_image
from augstream_service.imagesize import image_header

RNG = np.random.default_rng(3)
MODES = ("rgb", "grayscale", "rgba")


def _photo(height: int, width: int, grey_corner: bool = False) -> np.ndarray:
    image = cv2.GaussianBlur(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8), (7, 7), 2)
    if grey_corner:  # a block of exactly 128 where a cut file's missing blocks would be
        image[-24:, -24:] = 128
    return image


def _jpeg(image: np.ndarray, progressive: bool = False, sampling: int | None = None) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    if sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    return cv2.imencode(".jpg", image, params)[1].tobytes()


SAMPLINGS = [
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
]
SIZES = [(8, 8), (50, 60), (200, 240)]  # reduced 1/8, 1/2 and full-size decodes


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_a_baseline_jpeg_cut_short_with_its_end_marker_is_refused(
    sampling: int, fraction: float
) -> None:
    data = _jpeg(_photo(200, 240), sampling=sampling)
    cut = data[: int(len(data) * fraction)] + b"\xff\xd9"
    for mode, size in itertools.product(MODES, SIZES):
        with pytest.raises(DecodeError, match="truncated JPEG"):
            decode_image(cut, color_mode=mode, target_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_a_progressive_jpeg_cut_between_its_scans_is_refused(fraction: float) -> None:
    data = _jpeg(_photo(200, 240), progressive=True)
    cut = data[: int(len(data) * fraction)] + b"\xff\xd9"
    for mode, size in itertools.product(MODES, SIZES):
        with pytest.raises(DecodeError, match="truncated JPEG"):
            decode_image(cut, color_mode=mode, target_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_complete_jpegs_decode_as_before(progressive: bool, sampling: int) -> None:
    for height, width in [(16, 16), (17, 321), (200, 240), (333, 97)]:
        for grey in (False, True):
            data = _jpeg(_photo(height, width, grey), progressive, sampling)
            for mode, size in itertools.product(MODES, SIZES):
                decode_image(data, color_mode=mode, target_size=size)  # type: ignore[arg-type]


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_decoded_bytes_count_channels_and_bit_depth() -> None:
    deep = RNG.integers(0, 65535, (64, 64, 4), dtype=np.uint16)  # 16-bit RGBA: 8 B a pixel
    data = _png(deep)
    header = image_header(data)
    assert header is not None and (header.channels, header.depth) == (4, 2)
    assert header.decoded_bytes == 64 * 64 * 8
    with pytest.raises(DecodeError, match=r"4 channels at 16 bits = 32768 bytes decoded"):
        decode_image(data, color_mode="rgb", target_size=(8, 8), max_bytes=32767)
    decode_image(data, color_mode="rgb", target_size=(8, 8), max_bytes=32768)
    # The same pixels at 8 bits in RGB pass a limit the deep ones do not.
    plain = _png(RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    decode_image(plain, color_mode="rgb", target_size=(8, 8), max_bytes=64 * 64 * 3)
    # A grey image read as RGBA is decoded to four channels, and counted so.
    grey = _png(RNG.integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(DecodeError, match="4 channels at 8 bits"):
        decode_image(grey, color_mode="rgba", target_size=(8, 8), max_bytes=64 * 64 * 4 - 1)


@pytest.mark.parametrize(
    ("extension", "image", "layout"),
    [
        (".png", np.zeros((5, 7, 3), np.uint8), (7, 5, 3, 1)),
        (".png", np.zeros((5, 7), np.uint16), (7, 5, 1, 2)),
        (".jpg", np.zeros((5, 7, 3), np.uint8), (7, 5, 3, 1)),
        (".jpg", np.zeros((5, 7), np.uint8), (7, 5, 1, 1)),
        (".bmp", np.zeros((5, 7, 3), np.uint8), (7, 5, 3, 1)),
        (".tiff", np.zeros((5, 7, 3), np.uint16), (7, 5, 3, 2)),
        (".tiff", np.zeros((5, 7, 4), np.uint8), (7, 5, 4, 1)),
        (".ppm", np.zeros((5, 7, 3), np.uint16), (7, 5, 3, 2)),
        (".pgm", np.zeros((5, 7), np.uint8), (7, 5, 1, 1)),
    ],
)
def test_headers_declare_channels_and_depth(
    extension: str, image: np.ndarray, layout: tuple[int, int, int, int]
) -> None:
    header = image_header(cv2.imencode(extension, image)[1].tobytes())
    assert header is not None and tuple(header[:4]) == layout
