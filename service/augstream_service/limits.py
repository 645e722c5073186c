"""What one stream may ask of the server."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "SHOWN_CHARACTERS",
    "Limits",
    "shown",
]

#: 8192 x 8192: a decoded RGB image of this size is already 192 MiB.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26
#: 256 MiB: an 8192 x 8192 image of 8-bit RGBA, or 16-bit RGB at 5,900 x 5,900.
DEFAULT_MAX_IMAGE_BYTES = 256 << 20
#: Characters of a name a client sent that an error message echoes, at most.
SHOWN_CHARACTERS = 100


def shown(name: str) -> str:
    """``name`` as error messages echo it: a client's 60,000-character name must not come
    back in a 120 KB error (nor fill the log), so a long one is cut to its first
    ``SHOWN_CHARACTERS`` and says how long it was."""
    if len(name) <= SHOWN_CHARACTERS:
        return name
    return f"{name[:SHOWN_CHARACTERS]}... ({len(name)} characters)"


@dataclass(frozen=True)
class Limits:
    """Per-request limits: bytes per batch, bytes per source file, pixels and decoded bytes
    per image; and for dataset statistics, images per fit and features (H*W*C) of a ZCA
    matrix."""

    max_batch_bytes: int = 256 << 20
    max_file_bytes: int = 64 << 20
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_fit_images: int = 100_000
    #: A ZCA matrix has this many squared entries (4096: 64 MiB of float32).
    max_zca_features: int = 4096
