"""Augmentation: ``sample`` draws parameters (the only randomness), ``apply`` is pure."""

from . import batched
from .apply import apply, apply_mask, standardize, warp
from .batchops import mix_batch
from .geometry import affine_matrix
from .params import IDENTITY, TransformParams
from .sample import sample

__all__ = [
    "IDENTITY",
    "batched",
    "TransformParams",
    "affine_matrix",
    "apply",
    "apply_mask",
    "mix_batch",
    "sample",
    "standardize",
    "warp",
]
