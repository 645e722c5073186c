"""Collate samples into ``(x, y)`` arrays with Keras' label conventions."""

from __future__ import annotations

from typing import Any

import numpy as np

from augstream_protocol.fields import ClassMode
from augstream_protocol.spec import StreamSpec

__all__ = ["allocate_images", "allocate_masks", "batch_nbytes", "make_labels"]

Array = np.ndarray[Any, Any]


def allocate_images(count: int, spec: StreamSpec, dtype: str | None = None) -> Array:
    """An uninitialised ``(count, height, width, channels)`` buffer of ``dtype`` (default:
    the spec's)."""
    height, width = spec.target_size
    return np.empty((count, height, width, spec.channels), dtype=dtype or spec.output_dtype)


def allocate_masks(count: int, spec: StreamSpec) -> Array:
    """An uninitialised ``(count, height, width, 1)`` uint8 buffer for ``class_mode="mask"``."""
    height, width = spec.target_size
    return np.empty((count, height, width, 1), dtype=np.uint8)


def batch_nbytes(spec: StreamSpec) -> int:
    """Bytes of a full batch's images, the figure a server's batch limit applies to."""
    height, width = spec.target_size
    return spec.batch_size * height * width * spec.channels * np.dtype(spec.output_dtype).itemsize


def make_labels(class_mode: ClassMode, labels: Array, num_classes: int) -> Array | None:
    """Labels as Keras' ``flow_from_directory`` gives them (float32, like its default dtype).

    ``input`` and ``none`` carry no label array: for ``input`` the client uses ``x`` as ``y``.
    """
    if class_mode == "categorical":
        one_hot = np.zeros((len(labels), num_classes), dtype=np.float32)
        one_hot[np.arange(len(labels)), labels] = 1.0
        return one_hot
    if class_mode in ("binary", "sparse"):
        return labels.astype(np.float32)
    return None
