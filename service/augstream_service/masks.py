"""Image + mask pairs for segmentation (``class_mode="mask"``).

A mask dataset holds two folders side by side::

    images/<any/relative/path>.<jpg, png, ...>
    masks/<the same relative path>.png

The mask of ``images/a/b.jpg`` is ``masks/a/b.png``: the same relative path with the
extension replaced by ``.png`` (masks must be lossless; JPEG would smear class ids). Images
are served in sorted path order; an image without its mask is an error that names it.
Masks are decoded as 8-bit grey (a pixel's value is its class id) at the target size with
nearest-neighbour resizing, with the images' ``keep_aspect_ratio`` crop, so they stay
aligned with their images.
"""

from __future__ import annotations

import posixpath

from augstream_protocol.spec import StreamSpec

from .catalog import Dataset
from .sources import IMAGE_EXTENSIONS

__all__ = ["IMAGES", "MASKS", "MaskError", "mask_pairs", "mask_spec", "pair_count", "resolve_pairs"]

IMAGES = "images"
MASKS = "masks"


class MaskError(ValueError):
    """The dataset is not laid out as image + mask pairs; names what is wrong."""


def mask_pairs(files: frozenset[str] | set[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The images below ``images/`` (sorted) and their masks below ``masks/``."""
    images = sorted(
        f
        for f in files
        if f.startswith(IMAGES + "/") and posixpath.splitext(f)[1].lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise MaskError(f"class_mode='mask' needs images in an {IMAGES}/ folder; found none")
    masks = tuple(
        f"{MASKS}/{posixpath.splitext(image[len(IMAGES) + 1 :])[0]}.png" for image in images
    )
    missing = [image for image, mask in zip(images, masks, strict=True) if mask not in files]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        first = images.index(missing[0])
        raise MaskError(f"{missing[0]!r} has no mask {masks[first]!r}{more}")
    return tuple(images), masks


def pair_count(dataset: Dataset) -> int | None:
    """How many image + mask pairs a ``class_mode="mask"`` stream of ``dataset`` would read,
    for a dataset laid out for one (its class folders are exactly ``images`` and ``masks``);
    None otherwise, or when an image lacks its mask (the stream's 422 names it)."""
    if sorted(dataset.listing.class_names) != [IMAGES, MASKS]:
        return None
    files = dataset.all_files()
    if files is None:
        return None
    try:
        images, _ = mask_pairs(files)
    except MaskError:
        return None
    return len(images)


def mask_spec(spec: StreamSpec) -> StreamSpec:
    """The decoding of a stream's masks: grey, nearest-neighbour, the images' size and
    aspect-ratio crop (what the decoded-image cache keys on)."""
    # Not validated again: the reader reads only the decoding fields, and colour operations
    # (which grey images refuse) never touch masks.
    return spec.model_copy(update={"color_mode": "grayscale", "interpolation": "nearest"})


def resolve_pairs(spec: StreamSpec, dataset: Dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The image + mask pairs ``spec`` streams: the dataset's, then its ``subset``."""
    files = dataset.all_files()
    if files is None:
        raise MaskError(
            f"class_mode='mask' lists the {IMAGES}/ and {MASKS}/ folders; dataset "
            f"{dataset.name!r} cannot be listed (a manifest dataset)"
        )
    images, masks = mask_pairs(files)
    if spec.subset is not None:
        cut = int(spec.validation_split * len(images))
        keep = slice(0, cut) if spec.subset == "validation" else slice(cut, None)
        images, masks = images[keep], masks[keep]
    if not images:
        raise MaskError(f"the {spec.subset} subset of dataset {dataset.name!r} has no images")
    return images, masks
