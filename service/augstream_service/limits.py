"""What one stream may ask of the server."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "Limits"]

#: 8192 x 8192: a decoded RGB image of this size is already 192 MiB.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26


@dataclass(frozen=True)
class Limits:
    """Per-request limits: bytes per batch, bytes per source file, pixels per image; and
    for dataset statistics, images per fit and features (H*W*C) of a ZCA matrix."""

    max_batch_bytes: int = 256 << 20
    max_file_bytes: int = 64 << 20
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_fit_images: int = 100_000
    #: A ZCA matrix has this many squared entries (4096: 64 MiB of float32).
    max_zca_features: int = 4096
