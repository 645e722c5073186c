"""Dataset statistics for Keras' featurewise standardisation: pure functions.

Keras' ``fit`` holds its whole sample in memory and computes the per-channel mean, the
per-channel standard deviation of the centred sample, and a ZCA whitening matrix from the SVD
of the centred, flattened sample. Here the sample goes through in chunks instead: each
chunk's moments are computed on their own and merged in chunk order (Chan, Golub and
LeVeque's pairwise update), so memory stays bounded (vectors of H*W*C, plus one
(H*W*C)^2 matrix for ZCA) and the result does not depend on which thread computed which
chunk. The same numbers follow, in float64 rather than Keras' float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["KERAS_STD_EPSILON", "Moments", "Statistics", "fit_statistics"]

Array = np.ndarray[Any, Any]

#: Added to the standard deviation before dividing, as Keras' ``standardize`` does.
KERAS_STD_EPSILON = 1e-6


@dataclass(frozen=True)
class Moments:
    """Count, per-feature mean and scatter of flattened images, in float64.

    The scatter is the sum of squared deviations from the mean: one per feature, or (for
    ZCA) the full feature-by-feature matrix of summed outer products.
    """

    count: int
    mean: Array
    scatter: Array

    @classmethod
    def of(cls, images: Array, *, full: bool) -> Moments:
        """The moments of ``images`` (N x H x W x C), N >= 1."""
        flat = images.reshape(len(images), -1).astype(np.float64)
        mean = flat.mean(axis=0)
        deviation = flat - mean
        scatter = deviation.T @ deviation if full else np.einsum("ij,ij->j", deviation, deviation)
        return cls(len(flat), mean, scatter)

    def merged(self, other: Moments) -> Moments:
        """The moments of both samples together."""
        if not other.count:
            return self
        if not self.count:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        weight = self.count * other.count / count
        spread = np.outer(delta, delta) if self.scatter.ndim == 2 else delta * delta
        return Moments(
            count,
            self.mean + delta * (other.count / count),
            self.scatter + other.scatter + spread * weight,
        )


@dataclass(frozen=True)
class Statistics:
    """What featurewise standardisation applies, as float32 arrays in Keras' shapes: ``mean``
    and ``std`` broadcast to H x W x C, ``zca_whitening_matrix`` is D x D (D = H*W*C)."""

    mean: Array | None = None
    std: Array | None = None
    zca_whitening_matrix: Array | None = None

    def apply(self, x: Array) -> None:
        """Standardise the float32 batch ``x`` (N x H x W x C) in place, in the order of
        Keras' ``standardize``: centre, divide by the std, whiten."""
        if self.mean is not None:
            x -= self.mean
        if self.std is not None:
            x /= self.std + np.float32(KERAS_STD_EPSILON)
        if self.zca_whitening_matrix is not None and len(x):
            flat = x.reshape(len(x), -1)
            flat[...] = flat @ self.zca_whitening_matrix


def fit_statistics(
    moments: Moments, shape: tuple[int, int, int], *, zca_epsilon: float | None = None
) -> Statistics:
    """Keras' ``fit`` results from the moments of a sample of ``shape``-d images: the
    per-channel mean and std (1 x 1 x C), and with ``zca_epsilon`` the ZCA matrix.

    Keras centres by the per-channel mean (not each feature's own) before its SVD, and keeps
    ``min(n, D)`` singular vectors; the eigenvectors of the scatter about that centre are
    the same vectors, with the squared singular values as eigenvalues.
    """
    height, width, channels = shape
    n, pixels = moments.count, height * width
    per_pixel = moments.mean.reshape(pixels, channels)
    centre = per_pixel.mean(axis=0)  # every pixel counts n times: a plain mean of means
    scatter = np.diagonal(moments.scatter) if moments.scatter.ndim == 2 else moments.scatter
    spread = scatter.reshape(pixels, channels).sum(axis=0)
    spread = spread + n * ((per_pixel - centre) ** 2).sum(axis=0)
    std = np.sqrt(spread / (n * pixels))
    zca = None
    if zca_epsilon is not None:
        if moments.scatter.ndim != 2:
            raise ValueError("ZCA needs the full scatter matrix (Moments.of(..., full=True))")
        offset = moments.mean - np.tile(centre, pixels)
        gram = moments.scatter + n * np.outer(offset, offset)
        values, vectors = np.linalg.eigh(gram)  # ascending
        keep = min(n, len(values))
        values, vectors = values[len(values) - keep :], vectors[:, len(values) - keep :]
        singular = np.sqrt(np.clip(values, 0.0, None))
        zca = ((vectors * (np.sqrt(n) / (singular + zca_epsilon))) @ vectors.T).astype(np.float32)
    return Statistics(
        mean=centre.reshape(1, 1, channels).astype(np.float32),
        std=std.reshape(1, 1, channels).astype(np.float32),
        zca_whitening_matrix=zca,
    )
