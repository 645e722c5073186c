"""Decoding: formats, colour modes, sizes and corrupt input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from augstream_service.decode import DecodeError, centre_crop_to_aspect, decode_image


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


@pytest.fixture
def bgr() -> np.ndarray:
    image = np.zeros((30, 40, 3), np.uint8)
    image[..., 0] = 200  # blue in OpenCV's BGR order
    image[..., 2] = 50
    return image


@pytest.mark.parametrize(("mode", "channels"), [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
@pytest.mark.parametrize("source", ["bgr", "gray", "bgra"])
def test_every_source_decodes_to_every_mode(
    bgr: np.ndarray, mode: str, channels: int, source: str
) -> None:
    image = {
        "bgr": bgr,
        "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
    }[source]
    out = decode_image(encode(image), color_mode=mode, target_size=(12, 16))
    assert out.shape == (12, 16, channels) and out.dtype == np.uint8


def test_rgb_is_in_rgb_order(bgr: np.ndarray) -> None:
    out = decode_image(encode(bgr), color_mode="rgb", target_size=(30, 40))
    assert tuple(out[0, 0]) == (50, 0, 200)
    rgba = decode_image(encode(bgr), color_mode="rgba", target_size=(30, 40))
    assert tuple(rgba[0, 0]) == (50, 0, 200, 255)


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    deep = np.full((4, 4, 3), 65535, np.uint16)
    out = decode_image(encode(deep), color_mode="rgba", target_size=(4, 4))
    assert out.dtype == np.uint8 and out[..., :3].min() == 255


def test_jpeg_and_resize(bgr: np.ndarray) -> None:
    out = decode_image(
        encode(bgr, ".jpg"), color_mode="rgb", target_size=(60, 80), interpolation="bicubic"
    )
    assert out.shape == (60, 80, 3)
    assert abs(int(out[30, 40, 2]) - 200) <= 3


def test_keep_aspect_ratio_crops_the_centre() -> None:
    wide = np.zeros((10, 40, 1), np.uint8)
    wide[:, 15:25] = 255
    crop = centre_crop_to_aspect(wide, 10, 10)
    assert crop.shape[:2] == (10, 10) and crop.min() == 255


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50])
def test_corrupt_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="not a decodable image"):
        decode_image(data, color_mode="rgb", target_size=(4, 4))
