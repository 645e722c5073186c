"""Featurewise standardisation for the ``ImageDataGenerator`` front end: Keras' rules for
the flags, the statistics a stream names, and the same arithmetic for client-side
standardisation (with a ``preprocessing_function``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .client import Client

__all__ = ["STATS", "apply_featurewise", "check_fitted", "resolve_flags", "stats_refs"]

Array = np.ndarray[Any, Any]

#: Each statistic, the generator attribute that holds it, and the flag that needs it.
STATS = (
    ("mean", "featurewise_center"),
    ("std", "featurewise_std_normalization"),
    ("zca_whitening_matrix", "zca_whitening"),
)


def resolve_flags(center: bool, std: bool, zca: bool) -> tuple[bool, bool, bool]:
    """Keras' constructor rules, with its warnings: ZCA centres and replaces std
    normalisation; std normalisation implies centring."""
    if zca:
        if not center:
            center = True
            warnings.warn(
                "This ImageDataGenerator specifies `zca_whitening`, which overrides setting "
                "of `featurewise_center`.",
                stacklevel=3,
            )
        if std:
            std = False
            warnings.warn(
                "This ImageDataGenerator specifies `zca_whitening` which overrides setting "
                "of `featurewise_std_normalization`.",
                stacklevel=3,
            )
    if std and not center:
        center = True
        warnings.warn(
            "This ImageDataGenerator specifies `featurewise_std_normalization`, which "
            "overrides setting of `featurewise_center`.",
            stacklevel=3,
        )
    return center, std, zca


def _needed(generator: Any) -> list[tuple[str, str]]:
    return [(name, flag) for name, flag in STATS if getattr(generator, flag)]


def check_fitted(generator: Any) -> None:
    """Refuse to stream featurewise without statistics. (Keras only warns, then trains on
    unstandardised images: a silent mistake worth stopping here.)"""
    for name, flag in _needed(generator):
        if getattr(generator, name) is None:
            raise ValueError(
                f"This ImageDataGenerator specifies `{flag}`, but it hasn't been fit on any "
                f"training data: call `.fit(dataset_name, target_size=...)` or `.fit(x)` "
                f"first (or set `.{name}`)"
            )


def stats_refs(generator: Any, client: Client) -> dict[str, str]:
    """The spec's ``stats``: the generator's arrays by digest, sent where a server lacks
    them (arrays the server fitted are there already, under the same digest)."""
    check_fitted(generator)
    return {
        name: client.upload(np.asarray(getattr(generator, name), dtype=np.float32))
        for name, _ in _needed(generator)
    }


def apply_featurewise(generator: Any, x: Array) -> Array:
    """Keras' featurewise steps of ``standardize`` on a float32 batch."""
    if generator.featurewise_center:
        x = x - np.asarray(generator.mean, dtype=np.float32)
    if generator.featurewise_std_normalization:
        x = x / (np.asarray(generator.std, dtype=np.float32) + np.float32(1e-6))
    if generator.zca_whitening:
        matrix = np.asarray(generator.zca_whitening_matrix, dtype=np.float32)
        x = (x.reshape(len(x), -1) @ matrix).reshape(x.shape)
    return x
