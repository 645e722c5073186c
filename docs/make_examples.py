"""Write the manual's pictures of augstream's newer operations: ``docs/images/<op>.png``.

Each grid is the first batch of a stream over a small dataset (scikit-learn's two sample
photographs, four copies each, as classes ``china`` and ``flower``), made by the server's
own pipeline and drawn by its preview renderer, exactly as ``GET /v1/preview`` would show
it; ``masks.png`` shows a mask stream (the palace photograph with its sky as class 1).
Run from the repository root::

    .venv/bin/python docs/make_examples.py

The streams are deterministic, so the pictures only change when an operation does.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.datasets import load_sample_image

from augstream_protocol.spec import StreamSpec
from augstream_service.catalog import Catalog
from augstream_service.limits import Limits
from augstream_service.pipeline import make_plan
from augstream_service.preview import label_texts, render_grid
from augstream_service.reader import ImageReader
from augstream_service.uploads import UploadStore

OUT = Path(__file__).parent / "images"
TARGET = (64, 96)  # the photographs' aspect ratio; small, so the PNGs stay small

#: A picture's name (shown in docs/users/operations.md) -> the operation's spec fields.
EXAMPLES: dict[str, dict[str, Any]] = {
    "none": {},
    "random_crop": {"random_crop_fraction": 0.6},
    "random_resized_crop": {"random_resized_crop_scale": (0.1, 1.0)},
    "erasing": {"erasing_probability": 1.0, "erasing_value": 128},
    "contrast": {"contrast_range": (0.3, 1.7)},
    "saturation": {"saturation_range": (0.0, 2.0)},
    "hue": {"hue_shift_range": 90},
    "grayscale": {"grayscale_probability": 0.5},
    "blur": {"blur_sigma_range": (0.5, 3.0)},
    "noise": {"noise_std_range": (10, 40)},
    "jpeg": {"jpeg_quality_range": (5, 20)},
    "mixup": {"mixup_alpha": 0.4},
    "cutmix": {"cutmix_alpha": 1.0},
}


def write_dataset(root: Path) -> Path:
    """``photos/china/*.jpg`` and ``photos/flower/*.jpg``: four copies of each photograph."""
    dataset = root / "photos"
    for name in ("china", "flower"):
        folder = dataset / name
        folder.mkdir(parents=True)
        bgr = cv2.cvtColor(load_sample_image(f"{name}.jpg"), cv2.COLOR_RGB2BGR)
        for n in range(4):
            cv2.imwrite(str(folder / f"{n}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return dataset


#: Mask class id -> display colour (RGB): the scene, the sky, and the warp's fill.
MASK_COLOURS = np.array([(70, 70, 70), (230, 60, 230), (250, 220, 40)], np.uint8)


def write_mask_dataset(root: Path) -> Path:
    """``sky/images/<n>.jpg`` (the palace photograph) and ``sky/masks/<n>.png``: 1 where the
    sky is (a colour threshold, kept where it touches the top edge), 0 elsewhere."""
    dataset = root / "sky"
    rgb = load_sample_image("china.jpg")
    r, g, b = (rgb[:, :, i].astype(np.int32) for i in range(3))
    sky = ((b > 140) & (b >= r) & (b >= g - 5) & (b - r < 60)).astype(np.uint8)
    sky = cv2.morphologyEx(sky, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    _, parts = cv2.connectedComponents(sky)
    mask = np.isin(parts, np.unique(parts[0][parts[0] > 0])).astype(np.uint8)
    for folder in ("images", "masks"):
        (dataset / folder).mkdir(parents=True)
    for n in range(4):
        cv2.imwrite(str(dataset / "images" / f"{n}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(dataset / "masks" / f"{n}.png"), mask)
    return dataset


def render_masks(catalog: Catalog, uploads: UploadStore) -> bytes:
    """Four augmented images over their masks: the same geometry, nearest-neighbour masks,
    the fill in its own class, no colour change."""
    spec = StreamSpec(
        dataset="sky",
        class_mode="mask",
        target_size=TARGET,
        batch_size=4,
        seed=2,
        interpolation="area",
        rotation_range=30,
        zoom_range=0.2,
        horizontal_flip=True,
        random_resized_crop_scale=(0.3, 1.0),
        fill_mode="constant",
        mask_cval=2,
        contrast_range=(0.6, 1.4),
    )
    plan = make_plan(spec, catalog, uploads, Limits(), ImageReader(64 << 20, 64 << 20))
    produced = plan.produce_batch(0, 0)
    x, y = produced.arrays["x"], np.asarray(produced.arrays["y"])
    tiles = np.concatenate([x, MASK_COLOURS[y[:, :, :, 0]]])
    return render_grid(tiles, ["image"] * len(x) + ["mask"] * len(x), cols=4, tile=TARGET[1])


def render(catalog: Catalog, uploads: UploadStore, fields: dict[str, Any]) -> bytes:
    spec = StreamSpec(
        dataset="photos", target_size=TARGET, batch_size=8, seed=4, interpolation="area", **fields
    )
    plan = make_plan(spec, catalog, uploads, Limits(), ImageReader(64 << 20, 64 << 20))
    produced = plan.produce_batch(0, 0)
    count = len(produced.sample_ids)
    captions = label_texts(spec.class_mode, plan.source.class_names, produced.arrays, count)
    if fields.keys() & {"mixup_alpha", "cutmix_alpha"}:
        # Mixed labels: say how much of each class a picture carries.
        names = plan.source.class_names
        captions = [
            " ".join(f"{names[i][:3]} {v:.2f}" for i, v in enumerate(row) if v > 0)
            for row in np.asarray(produced.arrays["y"])
        ]
    return render_grid(produced.arrays["x"], captions, cols=4, tile=TARGET[1])


def smaller(png: bytes) -> bytes:
    """The same picture, compressed harder than the preview route bothers to."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return png
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return data.tobytes() if ok else png


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = Catalog.from_folders([write_dataset(root), write_mask_dataset(root)])
        uploads = UploadStore(root / "uploads", max_upload_bytes=0, max_total_bytes=0)
        for name, fields in EXAMPLES.items():
            png = smaller(render(catalog, uploads, fields))
            (OUT / f"{name}.png").write_bytes(png)
            print(f"docs/images/{name}.png: {len(png) // 1024} KiB")
        (OUT / "masks.png").write_bytes(smaller(render_masks(catalog, uploads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
