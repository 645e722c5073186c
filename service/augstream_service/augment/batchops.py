"""Batch-level operations: mixup and cutmix pair each sample with another of its batch.

``mix_batch`` is pure given its generator, which the pipeline derives from the batch's
position (``sampling.batch_rng``), so a batch stays a pure function of
``(spec, epoch, batch)``. Labels are mixed in the same proportion as the pixels: one-hot
(or multi-hot) and binary labels become mixed floats, sample weights are mixed too, and
masks (``class_mode="mask"``) take cutmix's box from the same partner.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

__all__ = ["mix_batch"]

Array = np.ndarray[Any, Any]


def _blend(a: Array, b: Array, lam: float) -> Array:
    mixed = np.float32(lam) * a.astype(np.float32) + np.float32(1 - lam) * b.astype(np.float32)
    if a.dtype.kind in "ui":
        mixed = np.clip(np.rint(mixed), np.iinfo(a.dtype).min, np.iinfo(a.dtype).max)
    return mixed.astype(a.dtype, copy=False)


def _box(rng: np.random.Generator, lam: float, height: int, width: int) -> tuple[int, ...]:
    """CutMix's box (Yun et al.): sides sqrt(1 - lam) of the image's, centred anywhere,
    cut to the image."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = round(height * cut), round(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, width)
    return top, bottom, left, right


def mix_batch(
    rng: np.random.Generator, arrays: dict[str, Array], spec: StreamSpec
) -> dict[str, Array]:
    """``arrays`` (``x``, and ``y``/``w`` if present) after mixup or cutmix.

    With both ``mixup_alpha`` and ``cutmix_alpha`` set, each batch uses one of them with
    even odds. The mixing weight is drawn from Beta(alpha, alpha) once per batch, and the
    batch is paired with a random permutation of itself.
    """
    x = arrays["x"]
    count = len(x)
    if count < 2 or not (spec.mixup_alpha or spec.cutmix_alpha):
        return arrays
    cutmix = bool(spec.cutmix_alpha) and (not spec.mixup_alpha or bool(rng.random() < 0.5))
    alpha = spec.cutmix_alpha if cutmix else spec.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = rng.permutation(count)
    out = dict(arrays)
    mask_labels = spec.class_mode == "mask"
    if cutmix:
        top, bottom, left, right = _box(rng, lam, x.shape[1], x.shape[2])
        out["x"] = x.copy()
        out["x"][:, top:bottom, left:right] = x[partner, top:bottom, left:right]
        # The label weight is the share of pixels each image really kept.
        lam = 1.0 - (bottom - top) * (right - left) / (x.shape[1] * x.shape[2])
        if mask_labels:
            y = arrays["y"]
            out["y"] = y.copy()
            out["y"][:, top:bottom, left:right] = y[partner, top:bottom, left:right]
    else:
        out["x"] = _blend(x, x[partner], lam)
    for name in ("y", "w"):
        if name in arrays and not (name == "y" and mask_labels):
            out[name] = _blend(arrays[name], arrays[name][partner], lam)
    return out
