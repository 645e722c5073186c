"""Augmentation: ``sample`` draws parameters (the only randomness), ``apply`` is pure."""

from .apply import apply, standardize, warp
from .geometry import affine_matrix
from .params import IDENTITY, TransformParams
from .sample import sample

__all__ = ["IDENTITY", "TransformParams", "affine_matrix", "apply", "sample", "standardize", "warp"]
