"""``ImageDataGenerator.fit`` against Keras' legacy one: the same statistics from the same
images, and the same standardised batches.

The ``noise`` images are PNGs already at the target size, so both read the same pixels.
Keras holds its sample in float32 and takes an SVD; the server merges float64 moments and
takes an eigendecomposition, hence a tolerance (the measured differences are far below it).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from augstream.generator import ImageDataGenerator
from tests.conftest import LiveServer
from tests.integration.test_stats import read_noise

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytestmark = pytest.mark.keras
legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")


def keras_generator(**kwargs: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras' notes on implied flags
        return legacy.ImageDataGenerator(**kwargs)


def keras_standardized(generator: object, images: np.ndarray) -> np.ndarray:
    """What Keras' iterators yield: ``standardize`` on each float32 image."""
    return np.stack([generator.standardize(image.astype(np.float32)) for image in images])


@pytest.mark.parametrize(
    "flags",
    [
        {"featurewise_center": True, "featurewise_std_normalization": True},
        {"zca_whitening": True, "samplewise_center": True},
    ],
    ids=["mean-std", "zca"],
)
def test_fit_and_stream_match_keras(
    stats_server: LiveServer, noise_root: Path, flags: dict[str, bool]
) -> None:
    images = read_noise(noise_root)
    kwargs = {**flags, "rescale": 1 / 255}
    theirs = keras_generator(**kwargs)
    theirs.fit(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = ImageDataGenerator(server=stats_server.url, **kwargs)
    ours.fit("noise", target_size=(8, 8))
    for name in ("mean", "std", "zca_whitening_matrix"):
        expected = getattr(theirs, name)
        got = getattr(ours, name)
        if expected is None:
            assert got is None, name
            continue
        scale = float(np.abs(expected).max())
        assert got.shape == np.shape(expected), name
        np.testing.assert_allclose(got, expected, atol=5e-5 * scale, err_msg=name)
    # Fitting on the same images as an uploaded array gives the same statistics.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        uploaded = ImageDataGenerator(server=stats_server.url, **kwargs)
    uploaded.fit(images)
    np.testing.assert_array_equal(uploaded.mean, ours.mean)
    flow = ours.flow_from_directory(
        "noise", target_size=(8, 8), batch_size=300, shuffle=False, class_mode=None
    )
    x = flow[0]
    expected_x = keras_standardized(theirs, images)
    assert x.dtype == np.float32 and x.shape == expected_x.shape
    scale = float(np.abs(expected_x).max())
    np.testing.assert_allclose(x, expected_x, atol=1e-4 * scale)


def test_client_side_standardisation_applies_the_statistics(
    stats_server: LiveServer, noise_root: Path
) -> None:
    # A preprocessing_function runs on the client, so the statistics are applied there too.
    kwargs = {"featurewise_center": True, "featurewise_std_normalization": True}
    theirs = keras_generator(**kwargs, preprocessing_function=lambda image: image[::-1])
    ours = ImageDataGenerator(
        server=stats_server.url, **kwargs, preprocessing_function=lambda image: image[::-1]
    )
    images = read_noise(noise_root)
    theirs.fit(images)
    ours.fit("noise", target_size=(8, 8))
    flow = ours.flow_from_directory(
        "noise", target_size=(8, 8), batch_size=16, shuffle=False, class_mode=None
    )
    np.testing.assert_allclose(flow[0], keras_standardized(theirs, images[:16]), atol=1e-4)


def test_featurewise_without_fit_is_refused_before_streaming(stats_server: LiveServer) -> None:
    generator = ImageDataGenerator(server=stats_server.url, featurewise_center=True)
    with pytest.raises(ValueError, match=r"`featurewise_center`, but it hasn't been fit"):
        generator.flow_from_directory("noise", target_size=(8, 8))
    # Statistics set by hand (an ImageNet-style mean) need no fit: they are sent as given.
    generator.mean = np.array([100.0, 110.0, 120.0], np.float32).reshape(1, 1, 3)
    flow = generator.flow_from_directory(
        "noise", target_size=(8, 8), batch_size=4, shuffle=False, class_mode=None
    )
    plain = ImageDataGenerator(server=stats_server.url).flow_from_directory(
        "noise", target_size=(8, 8), batch_size=4, shuffle=False, class_mode=None
    )
    np.testing.assert_allclose(flow[0], plain[0].astype(np.float32) - generator.mean)
