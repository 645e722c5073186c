"""Generate real image folders for tests: class subfolders, mixed formats, sizes and modes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("cat", "dog", "fox")


def _image(rng: np.random.Generator, height: int, width: int, label: int) -> np.ndarray:
    """A smooth random picture with a class-dependent mark, so classes differ visibly."""
    noise = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    image = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (width // 2, height // 2), min(height, width) // 4, (80 * label, 255, 0), -1)
    return image


def make_image_folder(root: Path, per_class: tuple[int, ...] = (7, 5, 6), seed: int = 0) -> Path:
    """Write ``root/<class>/<n>.<ext>`` with PNG and JPEG files of varied sizes and modes.

    Sizes vary (all larger and smaller than the usual target), some files are grayscale or
    RGBA, and a stray text file and a nested folder test the listing rules.
    """
    rng = np.random.default_rng(seed)
    for label, (name, count) in enumerate(zip(CLASSES, per_class, strict=False)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            height, width = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            image = _image(rng, height, width, label)
            kind = n % 4
            if kind == 0:
                cv2.imwrite(str(folder / f"{n:03d}.png"), image)
            elif kind == 1:
                cv2.imwrite(str(folder / f"{n:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            elif kind == 2:
                gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
                cv2.imwrite(str(folder / f"{n:03d}.PNG"), gray)
            else:
                alpha = np.full((height, width, 1), 200, dtype=np.uint8)
                cv2.imwrite(str(folder / f"{n:03d}.png"), np.concatenate([image, alpha], axis=2))
        (folder / "notes.txt").write_text("not an image")
    nested = root / CLASSES[0] / "more"
    nested.mkdir(exist_ok=True)
    cv2.imwrite(str(nested / "nested.bmp"), _image(rng, 40, 30, 0))
    return root


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that declares ``width`` x ``height`` (a pixel bomb's start)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


#: Class id -> RGB colour of the shapes in ``make_mask_folder``'s images.
MASK_PALETTE = {0: (0, 0, 255), 1: (255, 0, 0), 2: (0, 255, 0), 3: (255, 255, 0)}


def make_mask_folder(root: Path, count: int = 12, seed: int = 0) -> Path:
    """Write a segmentation dataset: ``images/<n>.png`` (one ``.jpg``, one in a subfolder)
    of shapes in ``MASK_PALETTE``'s colours, and ``masks/<n>.png`` of their class ids.

    Sizes vary and are not square, so ``keep_aspect_ratio`` crops them.
    """
    rng = np.random.default_rng(seed)
    for n in range(count):
        height, width = int(rng.integers(30, 70)), int(rng.integers(30, 70))
        mask = np.zeros((height, width), np.uint8)
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        cv2.rectangle(mask, (x0, y0), (x0 + width // 3, y0 + height // 2), 1, -1)
        centre = (int(rng.integers(width // 2, width)), int(rng.integers(0, height)))
        cv2.circle(mask, centre, min(height, width) // 5, 2, -1)
        corner = [[width - 1, height - 1], [width // 2, height - 1], [width - 1, height // 2]]
        cv2.fillPoly(mask, [np.array(corner)], 3)
        rgb = np.zeros((height, width, 3), np.uint8)
        for label, colour in MASK_PALETTE.items():
            rgb[mask == label] = colour
        relative = f"sub/{n:03d}" if n == 1 else f"{n:03d}"
        extension = ".jpg" if n == 2 else ".png"
        for folder, name, picture in (
            ("images", relative + extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
            ("masks", relative + ".png", mask),
        ):
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), picture)
    return root
