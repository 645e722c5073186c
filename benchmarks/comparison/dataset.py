"""An ImageNet-like data set, generated once: natural photographs cut, scaled and tinted
into 500x375 JPEGs at quality 90 in class folders.

Photographs rather than noise: JPEG decoding time and compression ratios depend on content.
The two photographs scikit-learn ships are the source, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["ensure_dataset"]

Array = np.ndarray[Any, Any]

WIDTH, HEIGHT, QUALITY = 500, 375, 90


def _photographs() -> list[Array]:
    from sklearn.datasets import load_sample_images

    images: list[Array] = load_sample_images().images
    return [np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)) for image in images]


def _variant(source: Array, rng: np.random.Generator) -> Array:
    h, w = source.shape[:2]
    scale = rng.uniform(0.45, 1.0)
    crop_w = int(min(w, h * WIDTH / HEIGHT) * scale)
    crop_h = crop_w * HEIGHT // WIDTH
    top = int(rng.integers(0, h - crop_h + 1))
    left = int(rng.integers(0, w - crop_w + 1))
    crop = source[top : top + crop_h, left : left + crop_w]
    image = cv2.resize(crop, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    tinted: Array = np.clip(image.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return tinted


def ensure_dataset(root: Path, count: int = 1000, classes: int = 10) -> Path:
    """``count`` JPEGs in ``classes`` class folders under ``root`` (kept between runs: a
    finished set is marked and reused)."""
    marker = root / f".complete-{count}-{classes}"
    if marker.exists():
        return root
    rng = np.random.default_rng(2024)
    photos = _photographs()
    for n in range(count):
        folder = root / f"class{n % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image = _variant(photos[n % len(photos)], rng)
        cv2.imwrite(str(folder / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    marker.touch()
    return root
