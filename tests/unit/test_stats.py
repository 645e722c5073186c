"""Dataset statistics (``augstream_service.stats``): chunked moments give Keras' ``fit``."""

from __future__ import annotations

import os

import numpy as np
import pytest

from augstream_service.stats import Moments, Statistics, fit_statistics


def _images(count: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    # Independent noise with a per-channel offset: a well-conditioned sample.
    rng = np.random.default_rng(seed)
    offset = np.arange(shape[2], dtype=np.float32) * 40
    return rng.integers(0, 200, (count, *shape)).astype(np.float32) + offset


def _chunked(x: np.ndarray, sizes: list[int], full: bool) -> Moments:
    total = Moments(0, np.zeros(0), np.zeros(0))
    start = 0
    for size in sizes:
        total = total.merged(Moments.of(x[start : start + size], full=full))
        start += size
    return total


@pytest.mark.parametrize("full", [False, True])
def test_merged_chunks_equal_the_whole_sample(full: bool) -> None:
    x = _images(50, (4, 5, 3))
    whole = Moments.of(x, full=full)
    parts = _chunked(x, [1, 7, 20, 22], full)
    assert parts.count == 50
    np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(parts.scatter, whole.scatter, rtol=1e-10)


def test_mean_and_std_are_per_channel_over_the_whole_sample() -> None:
    x = _images(30, (6, 4, 3))
    stats = fit_statistics(_chunked(x, [10, 10, 10], False), (6, 4, 3))
    assert stats.mean is not None and stats.std is not None
    assert stats.mean.shape == stats.std.shape == (1, 1, 3) and stats.mean.dtype == np.float32
    np.testing.assert_allclose(stats.mean.reshape(-1), x.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(stats.std.reshape(-1), x.std(axis=(0, 1, 2)), rtol=1e-6)
    assert stats.zca_whitening_matrix is None


def test_zca_whitens_the_sample() -> None:
    # Centred by the channel mean and whitened, the sample's scatter is n times identity.
    x = _images(200, (4, 4, 2))
    stats = fit_statistics(_chunked(x, [64, 64, 72], True), (4, 4, 2), zca_epsilon=1e-9)
    assert stats.zca_whitening_matrix is not None
    batch = x.copy()
    Statistics(mean=stats.mean, zca_whitening_matrix=stats.zca_whitening_matrix).apply(batch)
    flat = batch.reshape(200, -1).astype(np.float64)
    np.testing.assert_allclose(flat.T @ flat / 200, np.eye(32), atol=2e-3)


def test_apply_follows_keras_order() -> None:
    x = _images(3, (2, 2, 3))
    mean = np.full((1, 1, 3), 10.0, np.float32)
    std = np.full((1, 1, 3), 4.0, np.float32)
    out = x.copy()
    Statistics(mean=mean, std=std).apply(out)
    np.testing.assert_allclose(out, (x - 10.0) / (4.0 + 1e-6), rtol=1e-6)


# Keras' own fit, for parity; the import is slow, so it comes last and only when asked.
@pytest.mark.keras
@pytest.mark.parametrize("count", [300, 40], ids=["more-images-than-features", "fewer"])
def test_matches_keras_fit(count: int) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
    shape = (8, 8, 3)
    x = _images(count, shape, seed=count)
    keras_std = legacy.ImageDataGenerator(
        featurewise_center=True, featurewise_std_normalization=True, rescale=1 / 255
    )
    keras_std.fit(x)
    with pytest.warns(UserWarning, match="zca_whitening"):
        keras_zca = legacy.ImageDataGenerator(zca_whitening=True, rescale=1 / 255)
    keras_zca.fit(x)
    ours = fit_statistics(_chunked(x / 255, [13] * (count // 13) + [count % 13], True), shape,
                          zca_epsilon=1e-6)  # fmt: skip
    assert ours.mean is not None and ours.std is not None
    assert ours.zca_whitening_matrix is not None
    np.testing.assert_allclose(ours.mean, keras_std.mean, atol=1e-5)
    np.testing.assert_allclose(ours.std, keras_std.std, atol=1e-5)
    scale = np.abs(keras_zca.zca_whitening_matrix).max()
    np.testing.assert_allclose(ours.zca_whitening_matrix, keras_zca.zca_whitening_matrix,
                               atol=1e-5 * scale)  # fmt: skip
