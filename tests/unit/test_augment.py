"""Augmentation: sampling is deterministic, apply is pure, semantics are ImageDataGenerator's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service.augment import IDENTITY, TransformParams, apply, sample, warp
from augstream_service.sampling import sample_rng


def spec(**fields: object) -> StreamSpec:
    return StreamSpec(dataset="d", target_size=(32, 48), **fields)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (48, 32))


def test_no_augmentation_draws_nothing_and_changes_nothing(image: np.ndarray) -> None:
    s = spec()
    assert sample(np.random.default_rng(0), s, image.shape) is IDENTITY
    out = np.empty_like(image)
    apply(image, IDENTITY, s, out)
    np.testing.assert_array_equal(out, image)


def test_same_generator_state_gives_same_params() -> None:
    s = spec(
        rotation_range=30,
        width_shift_range=0.2,
        zoom_range=0.3,
        horizontal_flip=True,
        channel_shift_range=10,
        brightness_range=(0.5, 1.5),
        shear_range=5,
    )
    a = sample(sample_rng(1, 2, 3), s, (32, 48, 3))
    b = sample(sample_rng(1, 2, 3), s, (32, 48, 3))
    c = sample(sample_rng(1, 2, 4), s, (32, 48, 3))
    assert a == b and a != c


def test_ranges_are_respected() -> None:
    s = spec(
        rotation_range=30,
        width_shift_range=0.25,
        height_shift_range=5.0,
        shear_range=10,
        zoom_range=(0.5, 0.75),
        channel_shift_range=20,
        brightness_range=(0.4, 0.6),
    )
    for i in range(300):
        p = sample(sample_rng(0, 0, i), s, (32, 48, 3))
        assert -30 <= p.theta <= 30
        assert abs(p.tx) <= 0.25 * 48  # fraction of the width, horizontally
        assert abs(p.ty) <= 5.0  # pixels, since >= 1
        assert -10 <= p.shear <= 10
        assert 0.5 <= p.zx <= 0.75 and 0.5 <= p.zy <= 0.75
        assert p.channel_shift is not None and -20 <= p.channel_shift <= 20
        assert p.brightness is not None and 0.4 <= p.brightness <= 0.6


def test_int_and_list_shift_ranges_pick_whole_choices() -> None:
    int_spec = spec(width_shift_range=3)
    values = {sample(sample_rng(0, 0, i), int_spec, (32, 48, 3)).tx for i in range(300)}
    assert values == {-2.0, -1.0, 0.0, 1.0, 2.0}
    list_spec = spec(height_shift_range=[4.0, 7.0])
    values = {sample(sample_rng(0, 0, i), list_spec, (32, 48, 3)).ty for i in range(300)}
    assert values == {-7.0, -4.0, 4.0, 7.0}
    fraction_list = spec(height_shift_range=[0.5])
    values = {sample(sample_rng(0, 0, i), fraction_list, (32, 48, 3)).ty for i in range(50)}
    assert values == {-16.0, 16.0}


def test_flips_are_exact_mirrors(image: np.ndarray) -> None:
    np.testing.assert_array_equal(
        warp(image, TransformParams(flip_horizontal=True)), image[:, ::-1]
    )
    np.testing.assert_array_equal(warp(image, TransformParams(flip_vertical=True)), image[::-1])


def test_integer_shift_moves_content_and_fills_per_mode() -> None:
    img = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6, 1) * 8
    shifted = {
        mode: warp(img, TransformParams(tx=2.0), fill_mode=mode, cval=255)[:, :, 0]
        for mode in ("constant", "nearest", "reflect", "wrap")
    }
    # Output column c samples input column c + 2: the content moves left by two pixels.
    for out in shifted.values():
        np.testing.assert_array_equal(out[:, :4], img[:, 2:, 0])
    np.testing.assert_array_equal(shifted["constant"][:, 4:], 255)
    np.testing.assert_array_equal(shifted["nearest"][:, 4:], img[:, [5, 5], 0])
    np.testing.assert_array_equal(shifted["reflect"][:, 4:], img[:, [5, 4], 0])
    np.testing.assert_array_equal(shifted["wrap"][:, 4:], img[:, [0, 1], 0])


def test_rotation_is_counter_clockwise() -> None:
    img = np.zeros((21, 21, 1), np.uint8)
    img[10, 15:] = 255  # a bar pointing right from the centre
    out = warp(img, TransformParams(theta=90.0), order=0)[:, :, 0]
    rows, cols = np.nonzero(out)
    assert set(cols) == {10} and rows.max() <= 10  # it now points up


def test_zoom_below_one_enlarges() -> None:
    img = np.zeros((41, 41, 1), np.uint8)
    img[15:26, 15:26] = 255
    area = int((warp(img, TransformParams(zx=0.5, zy=0.5), order=0) > 0).sum())
    assert area > 3.5 * 121


def test_single_channel_keeps_its_axis() -> None:
    gray = np.zeros((10, 12, 1), np.uint8)
    assert warp(gray, TransformParams(theta=5.0)).shape == (10, 12, 1)


def test_channel_shift_and_brightness_clip_like_keras(image: np.ndarray) -> None:
    out = np.empty_like(image)
    apply(image, TransformParams(channel_shift=1000.0), spec(), out)
    assert out.min() == image.max()  # shifted past the top, clipped to the image's max
    apply(image, TransformParams(brightness=0.0), spec(), out)
    assert out.max() == 0
    apply(image, TransformParams(brightness=10.0), spec(), out)
    assert out[image > 30].min() == 255


def test_float_output_rescales_after_augmentation(image: np.ndarray) -> None:
    out = np.empty(image.shape, np.float32)
    apply(image, IDENTITY, spec(rescale=1 / 255), out)
    np.testing.assert_allclose(out, image / 255, atol=1e-6)
