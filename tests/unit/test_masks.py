"""Segmentation masks: the pairing rule, and masks that stay pixel-aligned with their images
under every geometric operation and fill mode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service.augment import apply, apply_mask, sample
from augstream_service.masks import MaskError, mask_pairs
from augstream_service.sampling import sample_rng

# Class id -> the colour it is drawn in; 255 is the fill ("void") class.
PALETTE = {0: (0, 0, 255), 1: (255, 0, 0), 2: (0, 255, 0), 3: (255, 255, 0), 255: (255, 255, 255)}
SIZE = 32


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 32x32 RGB picture of known shapes and its mask (class ids), drawn from one map.

    The shapes are asymmetric, so a flip or rotation that were wrong on one side would show.
    """
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.rectangle(mask, (3, 4), (13, 20), 1, -1)
    cv2.circle(mask, (22, 10), 6, 2, -1)
    cv2.fillPoly(mask, [np.array([[18, 30], [30, 30], [30, 19]])], 3)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for label, colour in PALETTE.items():
        image[mask == label] = colour
    return image, mask[:, :, np.newaxis]


def classes_of(image: np.ndarray) -> np.ndarray:
    """The class each pixel's colour stands for (the nearest palette colour)."""
    colours = np.array(list(PALETTE.values()), dtype=np.int32)
    distance = np.abs(image[:, :, np.newaxis, :].astype(np.int32) - colours).sum(axis=3)
    return np.array(list(PALETTE), dtype=np.uint8)[distance.argmin(axis=2)]


GEOMETRY = {
    "rotation_range": 180,
    "width_shift_range": 0.3,
    "height_shift_range": 0.3,
    "shear_range": 30,
    "zoom_range": (0.5, 1.6),
    "horizontal_flip": True,
    "vertical_flip": True,
}
CROPS = [
    {},
    {"random_crop_fraction": 0.6},
    {"random_resized_crop_scale": (0.2, 1.0), "random_resized_crop_ratio": (0.5, 2.0)},
]


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_masks_stay_aligned_under_every_geometric_operation(fill_mode: str) -> None:
    image, mask = scene()
    out = np.empty_like(image)
    out_mask = np.empty_like(mask)
    checked = 0
    for variant, crop in enumerate(CROPS):
        # Each operation alone, then all of them at once.
        singles = [{name: value} for name, value in GEOMETRY.items()]
        for k, fields in enumerate([*singles, GEOMETRY]):
            spec = StreamSpec(
                dataset="d",
                class_mode="mask",
                target_size=(SIZE, SIZE),
                fill_mode=fill_mode,
                cval=255,
                mask_cval=255,
                interpolation_order=0,
                **fields,
                **crop,
            )
            for i in range(60 if fields is GEOMETRY else 5):
                params = sample(sample_rng(variant, k, i), spec, image.shape)
                apply(image, params, spec, out)
                apply_mask(mask, params, spec, out_mask)
                np.testing.assert_array_equal(
                    classes_of(out), out_mask[:, :, 0], err_msg=f"{fields} {crop} {params}"
                )
                checked += 1
    assert checked >= 250  # x 4 fill modes: over 1,000 samples


def test_masks_stay_aligned_inside_shapes_with_smooth_interpolation() -> None:
    """With bilinear warps the image's edges blend; well inside a shape (its whole 3x3
    neighbourhood in the mask is one class) the image still shows that class's colour."""
    image, mask = scene()
    spec = StreamSpec(
        dataset="d",
        class_mode="mask",
        target_size=(SIZE, SIZE),
        interpolation_order=1,
        fill_mode="reflect",
        random_resized_crop_scale=(0.3, 1.0),
        **GEOMETRY,
    )
    out, out_mask = np.empty_like(image), np.empty_like(mask)
    inside = 0
    for i in range(100):
        params = sample(sample_rng(7, 0, i), spec, image.shape)
        apply(image, params, spec, out)
        apply_mask(mask, params, spec, out_mask)
        m = out_mask[:, :, 0]
        lo = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
        interior = lo == hi
        np.testing.assert_array_equal(classes_of(out)[interior], m[interior])
        inside += int(interior.sum())
    assert inside > 100 * SIZE * SIZE // 3


def test_masks_get_no_photometric_change_and_their_own_fill() -> None:
    image, mask = scene()
    spec = StreamSpec(
        dataset="d",
        class_mode="mask",
        target_size=(SIZE, SIZE),
        fill_mode="constant",
        cval=0,
        mask_cval=9,
        width_shift_range=10.0,
        brightness_range=(0.2, 0.3),
        contrast_range=(0.2, 0.3),
        noise_std_range=(30, 40),
        erasing_probability=1.0,
    )
    params = sample(sample_rng(0, 0, 0), spec, image.shape)
    out_mask = np.empty_like(mask)
    apply_mask(mask, params, spec, out_mask)
    values = set(np.unique(out_mask).tolist())
    assert values <= {0, 1, 2, 3, 9} and 9 in values  # class ids, and the fill where shifted
    without = spec.model_copy(update={"brightness_range": None, "noise_std_range": None})
    shifted = sample(sample_rng(0, 0, 0), without, image.shape)
    assert shifted.tx == params.tx  # the photometric draws come after the geometry's


def test_pairs_match_by_relative_path_with_png_masks() -> None:
    files = {
        "images/a.jpg",
        "images/sub/b.png",
        "images/notes.txt",
        "masks/a.png",
        "masks/sub/b.png",
        "masks/extra.png",
    }
    assert mask_pairs(frozenset(files)) == (
        ("images/a.jpg", "images/sub/b.png"),
        ("masks/a.png", "masks/sub/b.png"),
    )
    with pytest.raises(MaskError, match=r"'images/c.jpg' has no mask 'masks/c.png'"):
        mask_pairs(frozenset({*files, "images/c.jpg"}))
    with pytest.raises(MaskError, match="images/ folder"):
        mask_pairs(frozenset({"masks/a.png", "cat/1.png"}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mixup_alpha": 0.2}, "mixup_alpha does not apply to class_mode='mask'"),
        ({"classes": ["a"]}, "classes does not apply to class_mode='mask'"),
        ({"mask_cval": 256}, "mask_cval"),
    ],
)
def test_mask_specs_refuse_what_cannot_apply(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamSpec(dataset="d", class_mode="mask", **fields)
