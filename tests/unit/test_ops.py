"""Every augmentation operation, old and new, from one registry: deterministic, the right
shape and dtype (uint8 and float32 outputs), the identity at zero strength, doing something
at strength, and reaching masks exactly when it is geometric."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service.augment import apply, apply_mask, mix_batch, sample
from augstream_service.sampling import batch_rng, sample_rng

Kind = Literal["geometric", "photometric", "batch"]


@dataclass(frozen=True)
class Op:
    strong: dict[str, Any]
    zero: dict[str, Any]
    kind: Kind


#: name -> (spec fields at some strength, the same fields at zero strength, kind).
OPS: dict[str, Op] = {
    "rotation": Op({"rotation_range": 45}, {"rotation_range": 0}, "geometric"),
    "width_shift": Op({"width_shift_range": 0.3}, {"width_shift_range": 0.0}, "geometric"),
    "height_shift": Op({"height_shift_range": 5}, {"height_shift_range": 0}, "geometric"),
    "shear": Op({"shear_range": 30}, {"shear_range": 0}, "geometric"),
    "zoom": Op({"zoom_range": (0.6, 1.4)}, {"zoom_range": (1.0, 1.0)}, "geometric"),
    "horizontal_flip": Op({"horizontal_flip": True}, {"horizontal_flip": False}, "geometric"),
    "vertical_flip": Op({"vertical_flip": True}, {"vertical_flip": False}, "geometric"),
    "random_crop": Op({"random_crop_fraction": 0.6}, {"random_crop_fraction": 1.0}, "geometric"),
    "random_resized_crop": Op(
        {"random_resized_crop_scale": (0.2, 0.8), "random_resized_crop_ratio": (0.5, 2.0)},
        {"random_resized_crop_scale": (1.0, 1.0), "random_resized_crop_ratio": (1.0, 1.0)},
        "geometric",
    ),
    "channel_shift": Op({"channel_shift_range": 40}, {"channel_shift_range": 0}, "photometric"),
    "brightness": Op(
        {"brightness_range": (0.3, 1.7)}, {"brightness_range": (1.0, 1.0)}, "photometric"
    ),
    "erasing": Op(
        {
            "erasing_probability": 1.0,
            "erasing_scale": (0.1, 0.3),
            "erasing_ratio": (0.5, 2),
            "erasing_value": 128,
        },
        {
            "erasing_probability": 0.0,
            "erasing_scale": (0.1, 0.3),
            "erasing_ratio": (0.5, 2),
            "erasing_value": 128,
        },
        "photometric",
    ),
    "contrast": Op({"contrast_range": (0.2, 1.8)}, {"contrast_range": (1.0, 1.0)}, "photometric"),
    "saturation": Op(
        {"saturation_range": (0.0, 2.0)}, {"saturation_range": (1.0, 1.0)}, "photometric"
    ),
    "hue": Op({"hue_shift_range": 90}, {"hue_shift_range": 0}, "photometric"),
    "grayscale": Op({"grayscale_probability": 1.0}, {"grayscale_probability": 0.0}, "photometric"),
    "blur": Op({"blur_sigma_range": (0.8, 2.0)}, {"blur_sigma_range": (0.0, 0.0)}, "photometric"),
    "noise": Op({"noise_std_range": (5, 20)}, {"noise_std_range": (0.0, 0.0)}, "photometric"),
    # JPEG is lossy at any quality: its zero strength is "off".
    "jpeg": Op({"jpeg_quality_range": (10, 40)}, {"jpeg_quality_range": None}, "photometric"),
    "mixup": Op({"mixup_alpha": 0.4}, {"mixup_alpha": 0.0}, "batch"),
    "cutmix": Op({"cutmix_alpha": 1.0}, {"cutmix_alpha": 0.0}, "batch"),
}
PER_SAMPLE = [name for name, op in OPS.items() if op.kind != "batch"]
BATCH = [name for name, op in OPS.items() if op.kind == "batch"]
DTYPES = ["uint8", "float32"]
HEIGHT, WIDTH = 24, 32


def test_the_registry_names_every_operation_of_the_spec() -> None:
    """A new operation field must join the registry (and so every check below)."""
    covered = {name for op in OPS.values() for name in op.strong}
    operation_fields = {
        name
        for name in StreamSpec.model_fields
        if name.endswith(("_range", "_probability", "_alpha", "_flip"))
        or name.startswith(("random_", "erasing_"))
    }
    assert operation_fields - covered == set()


def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    picture = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (WIDTH, HEIGHT))
    cv2.rectangle(picture, (4, 3), (14, 18), (250, 40, 10), -1)  # an edge for blur and crops
    return picture


def mask() -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH, 1), np.uint8)
    m[3:19, 4:15] = 1
    m[10:, 20:] = 2
    return m


def spec(fields: dict[str, Any], dtype: str, **more: Any) -> StreamSpec:
    return StreamSpec(dataset="d", target_size=(HEIGHT, WIDTH), dtype=dtype, **fields, **more)


def run(s: StreamSpec, sample_id: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty((HEIGHT, WIDTH, 3), s.output_dtype)
    out_mask = np.empty((HEIGHT, WIDTH, 1), np.uint8)
    params = sample(sample_rng(11, 0, sample_id), s, (HEIGHT, WIDTH, 3))
    apply(image(), params, s, out)
    apply_mask(mask(), params, s, out_mask)
    return out, out_mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", PER_SAMPLE)
def test_sample_operation(name: str, dtype: str) -> None:
    op = OPS[name]
    strong, zero = spec(op.strong, dtype), spec(op.zero, dtype)
    plain = image().astype(dtype)
    changed_images = changed_masks = 0
    for sample_id in range(8):
        out, out_mask = run(strong, sample_id)
        again, again_mask = run(strong, sample_id)
        assert out.tobytes() == again.tobytes() and out_mask.tobytes() == again_mask.tobytes()
        assert out.shape == (HEIGHT, WIDTH, 3) and out.dtype == np.dtype(dtype)
        assert out_mask.shape == (HEIGHT, WIDTH, 1) and out_mask.dtype == np.uint8
        changed_images += not np.array_equal(out, plain)
        changed_masks += not np.array_equal(out_mask, mask())
        identity, identity_mask = run(zero, sample_id)
        assert identity.tobytes() == plain.tobytes(), f"{name} at zero strength changed x"
        np.testing.assert_array_equal(identity_mask, mask())
    assert changed_images >= 4, f"{name} at strength rarely changes the image"
    if op.kind == "geometric":
        assert changed_masks >= 4, f"{name} moves pixels but not the mask"
    else:
        assert changed_masks == 0, f"{name} is photometric but changed the mask"


def batch(dtype: str, class_mode: str = "categorical") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (6, HEIGHT, WIDTH, 3)).astype(dtype)
    if class_mode == "mask":
        return {"x": x, "y": np.stack([np.roll(mask(), k, axis=1) for k in range(6)])}
    return {"x": x, "y": np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BATCH)
def test_batch_operation(name: str, dtype: str) -> None:
    op = OPS[name]
    strong, zero = spec(op.strong, dtype), spec(op.zero, dtype)
    before = batch(dtype)
    changed = 0
    for index in range(6):
        mixed = mix_batch(batch_rng(11, 0, index), before, strong)
        again = mix_batch(batch_rng(11, 0, index), before, strong)
        for key in ("x", "y"):
            assert mixed[key].tobytes() == again[key].tobytes()
            assert mixed[key].shape == before[key].shape
            assert mixed[key].dtype == before[key].dtype
        np.testing.assert_allclose(mixed["y"].sum(axis=1), 1.0, rtol=1e-6)
        changed += not np.array_equal(mixed["x"], before["x"])
        identity = mix_batch(batch_rng(11, 0, index), before, zero)
        for key in ("x", "y"):
            assert identity[key].tobytes() == before[key].tobytes()
    assert changed >= 4
    assert before["x"].tobytes() == batch(dtype)["x"].tobytes()  # inputs are not written to


def test_cutmix_pastes_masks_with_their_pixels_and_mixup_refuses_masks() -> None:
    s = spec({"cutmix_alpha": 1.0}, "uint8", class_mode="mask")
    before = batch("uint8", "mask")
    moved = 0
    for index in range(6):
        mixed = mix_batch(batch_rng(2, 0, index), before, s)
        assert mixed["y"].dtype == np.uint8 and set(np.unique(mixed["y"])) <= {0, 1, 2}
        # Wherever a pixel came from another image, its mask value came from there too.
        pasted = (mixed["x"] != before["x"]).any(axis=3)
        for i in range(6):
            sources = [
                j
                for j in range(6)
                if np.array_equal(mixed["x"][i][pasted[i]], before["x"][j][pasted[i]])
            ]
            assert not pasted[i].any() or any(
                np.array_equal(mixed["y"][i][pasted[i]], before["y"][j][pasted[i]]) for j in sources
            )
        moved += int(pasted.any())
    assert moved >= 3
    with pytest.raises(ValueError, match="mixup_alpha does not apply to class_mode='mask'"):
        spec({"mixup_alpha": 0.2}, "uint8", class_mode="mask")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"contrast_range": (1.5, 0.5)}, "contrast_range"),
        ({"blur_sigma_range": (-1, 2)}, "blur_sigma_range"),
        ({"noise_std_range": (0, 300)}, "noise_std_range"),
        ({"jpeg_quality_range": (50, 101)}, "jpeg_quality_range"),
        ({"hue_shift_range": 200}, "hue_shift_range"),
        ({"grayscale_probability": 1.5}, "grayscale_probability"),
        ({"erasing_scale": (0.0, 0.5)}, "erasing_scale"),
        ({"random_crop_fraction": 1.2}, "random_crop_fraction"),
        ({"random_crop_fraction": 0.5, "random_resized_crop_scale": (0.5, 1)}, "random_crop"),
        ({"mixup_alpha": 1.0, "class_mode": "sparse"}, "mixup_alpha"),
        ({"saturation_range": (0.5, 1.5), "color_mode": "grayscale"}, "saturation_range"),
    ],
)
def test_bad_parameters_are_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        StreamSpec(dataset="d", **fields)


def test_the_front_end_passes_the_operations_through_by_keyword() -> None:
    from augstream.generator import OPERATIONS, ImageDataGenerator

    keras_names = set(inspect.signature(ImageDataGenerator).parameters)
    newer = {n for op in OPS.values() for n in op.strong} - keras_names
    assert set(OPERATIONS) - {"mask_cval"} == newer
    gen = ImageDataGenerator(
        False,
        True,
        server="http://unused",
        contrast_range=(0.8, 1.2),
        cutmix_alpha=1.0,
        mask_cval=255,
    )  # positional arguments are still Keras' (samplewise_center=True here)
    fields = gen._spec_fields(dataset="d")
    assert (fields.contrast_range, fields.cutmix_alpha, fields.mask_cval) == ((0.8, 1.2), 1, 255)
    assert fields.samplewise_center
    with pytest.raises(TypeError, match="blur_sigma"):
        ImageDataGenerator(blur_sigma=(1, 2))
    with pytest.raises(ValueError, match="hue_shift_range"):
        ImageDataGenerator(hue_shift_range=400)
