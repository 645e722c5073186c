"""Make samples of a batch: read and decode them, draw their transforms, augment them into
their slots of the batch's buffers. The same function runs in the server's threads and in
its worker processes (``processes``), so a batch is the same bytes whichever made it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

from . import sampling
from .augment import TransformParams, apply, apply_mask, batched, sample
from .reader import SampleError
from .samples import Samples
from .scheduler import checkpoint

__all__ = ["make_samples"]

Array = np.ndarray[Any, Any]


def make_samples(
    spec: StreamSpec,
    source: Samples,
    epoch: int,
    ids: Sequence[int],
    x: Array,
    masks: Array | None,
    slots: Sequence[int],
) -> tuple[list[str | None], float]:
    """Samples ``ids`` of ``epoch``, augmented into ``x[slots[i]]`` (and their masks into
    ``masks[slots[i]]``); returns each sample's error (None: made) and the seconds the
    augmentation took (reading and decoding are timed by the reader)."""
    seed = spec.seed if spec.seed is not None else 0
    wanted = list(ids)
    images = source.images(wanted)
    mask_images = source.masks(wanted)
    started = time.perf_counter()
    drawn = _drawn(spec, seed, epoch, wanted, images)
    errors: list[str | None] = []
    for i, (sample_id, image) in enumerate(zip(wanted, images, strict=True)):
        checkpoint()  # a preview whose client left stops here
        mask = None if mask_images is None else mask_images[i]
        if isinstance(image, SampleError) or isinstance(mask, SampleError):
            failed = next(e for e in (image, mask) if isinstance(e, SampleError))
            errors.append(str(failed))
            continue
        if drawn is None:
            params = sample(sampling.sample_rng(seed, epoch, sample_id), spec, image.shape)
            matrix = None
        else:
            params, matrix = drawn[0][i], drawn[1][i]
        slot = slots[i]
        apply(image, params, spec, x[slot], matrix)
        if masks is not None and mask is not None:
            apply_mask(mask, params, spec, masks[slot], matrix)
        errors.append(None)
    return errors, time.perf_counter() - started


def _drawn(
    spec: StreamSpec, seed: int, epoch: int, ids: list[int], images: list[Any]
) -> tuple[list[TransformParams], Array] | None:
    """The transforms and their matrices, drawn together (``augment.batched``), when the
    spec allows and the images share one shape; None: draw them one by one."""
    shapes = {image.shape[:2] for image in images if not isinstance(image, SampleError)}
    if len(shapes) != 1 or not batched.eligible(spec):
        return None
    (shape,) = shapes
    params = batched.draw(spec, sampling.SAMPLE_KEY, seed, epoch, ids, shape)
    legacy = spec.compat == "keras-legacy"
    return params, batched.matrices(params, shape[0], shape[1], legacy_centre=legacy)
