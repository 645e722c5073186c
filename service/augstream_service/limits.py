"""What one stream may ask of the server."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "Limits"]

#: 8192 x 8192: a decoded RGB image of this size is already 192 MiB.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26


@dataclass(frozen=True)
class Limits:
    """Per-stream limits: bytes per batch, bytes per source file, pixels per image."""

    max_batch_bytes: int = 256 << 20
    max_file_bytes: int = 64 << 20
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
