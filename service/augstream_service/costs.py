"""What a batch, a preview, a fit or an upload costs in memory, estimated before it is made.

Each request reserves its estimate from the server's ``MemoryBudget`` before it allocates.
An estimate is an upper bound of what the request's own arrays hold at their peak
(``tests/unit/test_costs.py`` measures them against numpy's allocations): a batch's arrays
while it waits to be sent, and while it is made the decoded images and each operation's float
copies of one image (noise draws a float image, adds and clips it: about four). What no
request owns (one source image decoded at full size before it is resized, per worker) is
reserved once for the workers (``decode_scratch``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from augstream_protocol.spec import StreamSpec

if TYPE_CHECKING:
    from .pipeline import StreamPlan

__all__ = [
    "UPLOAD_COST",
    "batch_cost",
    "decode_scratch",
    "fit_cost",
    "preview_cost",
    "sample_scratch",
]

#: One upload's buffers: up to a write block of pending chunks and the block being joined.
UPLOAD_COST = 9 << 20
#: Bytes per decoded pixel at most (8-bit RGBA) and per float pixel.
_DECODED_PIXEL = 4
_FLOAT = 4

#: Float copies of one image (H x W x C float32) each operation holds at its peak, beyond the
#: image itself; summed over the operations a spec turns on (they run one after the other,
#: so the sum bounds the peak).
_COPIES = {
    "channel_shift_range": 2,
    "brightness_range": 3,
    "contrast_range": 3,
    "saturation_range": 3,
    "hue_shift_range": 4,
    "grayscale_probability": 2,
    "blur_sigma_range": 2,
    "noise_std_range": 4,
    "jpeg_quality_range": 2,
    "erasing_probability": 1,
}
#: The float image, its rescaled and standardised copies, and the copy into the batch.
_BASE_COPIES = 3


def _on(spec: StreamSpec, name: str) -> bool:
    value = getattr(spec, name)
    if isinstance(value, tuple):  # a range: off when it is neutral or absent
        return value != (1.0, 1.0) and any(value)
    return bool(value)


def sample_scratch(spec: StreamSpec) -> int:
    """Bytes of float copies of one image that augmenting it may hold at once."""
    height, width = spec.target_size
    image = height * width * max(spec.channels, 3) * _FLOAT
    copies = _BASE_COPIES + sum(n for name, n in _COPIES.items() if _on(spec, name))
    return image * copies


def _x_bytes(spec: StreamSpec, count: int, compact: bool = False) -> int:
    height, width = spec.target_size
    itemsize = 1 if compact else np.dtype(spec.output_dtype).itemsize
    return count * height * width * spec.channels * itemsize


def batch_cost(plan: StreamPlan) -> int:
    """One batch of ``plan``'s stream: its arrays (images, labels, masks) as they wait to be
    sent, and what making it holds meanwhile (its decoded images, one image's scratch,
    mixing's and whitening's copies of the batch)."""
    spec = plan.spec
    count = spec.batch_size
    height, width = spec.target_size
    x = _x_bytes(spec, count, plan.compact)
    labels = count * sum(
        np.dtype(entry["dtype"]).itemsize * math.prod(entry["shape"][1:])
        for entry in plan.source.label_arrays().values()
    )
    masks = count * height * width if spec.class_mode == "mask" else 0
    decoded = count * height * width * _DECODED_PIXEL * (2 if masks else 1)
    mixed = 2 * _x_bytes(spec.model_copy(update={"dtype": "float32"}), count)
    extra = mixed if spec.mixup_alpha or spec.cutmix_alpha else 0
    if spec.zca_whitening:
        extra += _x_bytes(spec.model_copy(update={"dtype": "float32"}), count)
    return int(x + labels + masks + decoded + sample_scratch(spec) + extra)


def preview_cost(plan: StreamPlan, grid_bytes: int) -> int:
    """A preview's batch (made uncompact) and its grid (the image and its PNG)."""
    return batch_cost(plan) + _x_bytes(plan.spec, plan.spec.batch_size) + 2 * grid_bytes


def fit_cost(spec: StreamSpec, chunk: int, window: int, *, full: bool) -> int:
    """A fit of ``spec``'s images, ``chunk`` images at a time, ``window`` chunks at once: each
    chunk's images as floats and float64 copies, and its scatter; for ZCA (``full``) the
    D x D matrices of merging and of the eigendecomposition (LAPACK's workspace among
    them: eight of them in all, each 8 D^2 bytes)."""
    height, width = spec.target_size
    features = height * width * spec.channels
    per_chunk = chunk * features * (_FLOAT + 16) + chunk * height * width * _DECODED_PIXEL
    per_chunk += sample_scratch(spec)
    matrix = 8 * features * (features if full else 1)
    return window * (per_chunk + matrix) + 8 * matrix


def decode_scratch(max_image_pixels: int, max_image_bytes: int) -> int:
    """One worker's decode of the largest image the server accepts, before it is resized:
    its decoded bytes are at most ``max_image_bytes``, and its pixels at most
    ``max_image_pixels`` of up to 4 channels of 16 bits."""
    return min(max_image_bytes, max_image_pixels * _DECODED_PIXEL * 2)
