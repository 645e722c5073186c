"""Decoding: formats, colour modes, sizes and corrupt input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from augstream_service.decode import DecodeError, centre_crop_to_aspect, decode_image, reduction


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


def _photo(height: int, width: int) -> np.ndarray:
    """A smooth colour image (JPEG's natural habitat), BGR."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize(
    ("size", "target", "mode", "ext", "expected"),
    [
        ((800, 1000), (224, 224), "rgb", ".jpg", 2),  # 800 // 4 = 200 < 224
        ((1800, 2000), (224, 224), "rgb", ".jpg", 8),
        ((1800, 2000), (224, 224), "grayscale", ".jpg", 8),
        ((375, 500), (224, 224), "rgb", ".jpg", 1),  # under twice the target: full scale
        ((1000, 460), (224, 224), "rgb", ".jpg", 2),  # the short side decides (EXIF may turn it)
        ((1000, 440), (224, 224), "rgb", ".jpg", 1),
        ((1800, 2000), (224, 224), "rgba", ".jpg", 1),  # OpenCV has no reduced RGBA decode
        ((1800, 2000), (224, 224), "rgb", ".png", 1),  # only JPEG decodes at a reduced scale
    ],
)
def test_reduction_keeps_the_target_covered(
    size: tuple[int, int], target: tuple[int, int], mode: str, ext: str, expected: int
) -> None:
    assert reduction(encode(_photo(*size), ext), mode, target) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["rgb", "grayscale"])
@pytest.mark.parametrize("keep_aspect_ratio", [False, True])
def test_reduced_decode_matches_full_decode_closely(mode: str, keep_aspect_ratio: bool) -> None:
    data = encode(_photo(900, 1200), ".jpg")
    fields = {"color_mode": mode, "target_size": (200, 240), "interpolation": "area"}
    reduced = decode_image(data, keep_aspect_ratio=keep_aspect_ratio, **fields)  # type: ignore[arg-type]
    full = decode_image(data, keep_aspect_ratio=keep_aspect_ratio, reduce=False, **fields)  # type: ignore[arg-type]
    assert reduced.shape == full.shape == (200, 240, 3 if mode == "rgb" else 1)
    assert not np.array_equal(reduced, full)  # the reduced path did run
    difference = np.abs(reduced.astype(np.int16) - full.astype(np.int16))
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 12
