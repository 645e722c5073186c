"""Dataset statistics against a live server: fit, stream standardised, the cache, errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from augstream import Client, InvalidSpecError, NotFoundError, ServerError, StreamSpec
from tests.conftest import LiveServer

NOISE = {"dataset": "noise", "target_size": (8, 8), "class_mode": "sparse"}


def read_noise(root: Path) -> np.ndarray:
    """The dataset's images as the server lists them (class folders, sorted names), RGB."""
    files = sorted(root.glob("*/*.png"))
    return np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])


def cache_figures(server: LiveServer) -> dict[str, int]:
    figures: dict[str, int] = httpx.get(f"{server.url}/v1/cache", timeout=30).json()["stats"]
    return figures


def test_fit_then_stream_standardised(stats_server: LiveServer, noise_root: Path) -> None:
    x = read_noise(noise_root).astype(np.float64) / 255
    with Client(stats_server.url) as client:
        fitted = client.stats(
            **NOISE, rescale=1 / 255, featurewise_center=True, featurewise_std_normalization=True
        )
        assert fitted.samples == 300 and fitted.stats.zca_whitening_matrix is None
        np.testing.assert_allclose(fitted.mean, x.mean(axis=(0, 1, 2)), atol=1e-7)
        np.testing.assert_allclose(fitted.std, x.std(axis=(0, 1, 2)), atol=1e-7)
        stream = client.stream(
            **NOISE,
            rescale=1 / 255,
            featurewise_std_normalization=True,
            stats=fitted.stats,
            shuffle=False,
            batch_size=100,
            epochs=1,
        )
        batch = np.concatenate([xb for xb, _ in stream])
    mean, std = fitted.mean_array(), fitted.std_array()
    rescaled = read_noise(noise_root).astype(np.float32) * np.float32(1 / 255)
    expected = (rescaled - mean) / (std + np.float32(1e-6))
    assert batch.dtype == np.float32 and batch.shape == (300, 8, 8, 3)
    np.testing.assert_allclose(batch, expected, atol=1e-5)
    assert abs(batch.mean()) < 1e-5 and abs(batch.std() - 1) < 1e-3


def test_a_second_fit_is_answered_from_the_cache(stats_server: LiveServer) -> None:
    before = cache_figures(stats_server)
    with Client(stats_server.url) as client:
        spec = StreamSpec(**NOISE, featurewise_center=True, seed=11)
        first = client.stats(spec, sample_size=37, seed=5)
        # The stream's own fields (batch size, its seed) are not part of a fit.
        again = client.stats(spec.with_seed(12), batch_size=3, sample_size=37, seed=5)
    after = cache_figures(stats_server)
    assert (first.cached, again.cached) == (False, True)
    assert first.samples == again.samples == 37 and first.stats == again.stats
    assert after["computed"] - before["computed"] == 1
    assert after["hits"] - before["hits"] == 1


def test_augmented_fit_is_reproducible_and_differs(
    stats_server: LiveServer, noise_root: Path, image_root: Path
) -> None:
    # Keras' fit(x, augment=True, rounds=2, seed) draws from NumPy's global generator, so
    # its numbers cannot be matched; what holds is the same result on any server for the
    # same seed, a different one for another seed, and not the unaugmented one.
    spec = {
        **NOISE,
        "featurewise_std_normalization": True,
        "rotation_range": 40,
        "zoom_range": 0.3,
        "fill_mode": "constant",
        "cval": 255,
    }
    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    fresh = create_app(Settings(datasets=[noise_root, image_root], threads=1))
    with Client(stats_server.url) as client, BackgroundServer(fresh) as other:
        augmented = client.stats(**spec, augment=True, rounds=2, seed=3)
        with Client(other.url) as replica:
            elsewhere = replica.stats(**spec, augment=True, rounds=2, seed=3)
        reseeded = client.stats(**spec, augment=True, rounds=2, seed=4)
        plain = client.stats(**spec)
    assert augmented.samples == 600 and plain.samples == 300
    assert not elsewhere.cached and elsewhere.stats == augmented.stats
    assert augmented.mean == elsewhere.mean and augmented.std == elsewhere.std
    assert reseeded.mean != augmented.mean
    # White fill where rotated corners leave the image: a brighter, wider sample.
    assert all(a > p + 0.5 for a, p in zip(augmented.mean, plain.mean, strict=True))


def test_zca_matrix_is_stored_and_downloadable(stats_server: LiveServer) -> None:
    with Client(stats_server.url) as client:
        fitted = client.stats(**NOISE, zca_whitening=True, zca_epsilon=1e-5)
        digest = fitted.stats.zca_whitening_matrix
        assert digest is not None and fitted.zca_features == 192
        matrix = client.download(digest)
        assert matrix.shape == (192, 192) and matrix.dtype == np.float32
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-4 * np.abs(matrix).max())
        # The same array uploaded by a client has the same name: nothing is sent again.
        assert client.upload(matrix) == digest


def test_bad_requests_name_what_was_wrong(stats_server: LiveServer) -> None:
    with Client(stats_server.url) as client:
        with pytest.raises(InvalidSpecError, match=r"zca_whitening.*12288 features.*4096"):
            client.stats(dataset="noise", target_size=(64, 64), zca_whitening=True)
        with pytest.raises(NotFoundError, match="unknown dataset 'nope'"):
            client.stats(dataset="nope", featurewise_center=True)
        with pytest.raises(InvalidSpecError, match=r"stats\.mean: featurewise_center=True needs"):
            next(iter(client.stream(**NOISE, featurewise_center=True)))
        with pytest.raises(InvalidSpecError, match=r"sample_size.*at most"):
            client.stats(**NOISE, augment=True, rounds=1000, featurewise_center=True)
        with pytest.raises(ServerError, match=r"could not be read.*broken/dog/000\.png") as bad:
            client.stats(dataset="broken", target_size=(8, 8), featurewise_center=True)
        assert bad.value.status == 502
        fitted = client.stats(**NOISE, featurewise_center=True)
        with pytest.raises(InvalidSpecError, match=r"stats\.mean: expected numbers that broad"):
            # A mean of the wrong shape: 3 channels' statistics for grayscale images.
            next(
                iter(
                    client.stream(
                        **NOISE,
                        color_mode="grayscale",
                        featurewise_center=True,
                        stats={"mean": client.upload(np.zeros((1, 1, 3), np.float32))},
                    )
                )
            )
    assert fitted.samples == 300


def test_replicas_are_sent_the_statistics(
    stats_server: LiveServer, noise_root: Path, image_root: Path, tmp_path: Path
) -> None:
    # The second replica keeps its uploads elsewhere: it has never seen these statistics
    # until the client sends them, and then streams the same bytes as the first.
    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    fresh = create_app(
        Settings(datasets=[noise_root, image_root], threads=1, upload_dir=tmp_path / "uploads")
    )
    spec = {**NOISE, "zca_whitening": True, "shuffle": False, "batch_size": 50, "epochs": 1}
    with BackgroundServer(fresh) as other, Client([stats_server.url, other.url]) as both:
        fitted = both.stats(**spec, zca_epsilon=1e-3, sample_size=250, seed=2)
        refs = fitted.stats.model_dump(exclude_none=True)
        assert set(refs) == {"mean", "zca_whitening_matrix"}  # ZCA turns std off
        with Client(other.url) as second:
            assert all(second.download(digest).size for digest in refs.values())
            alone = np.concatenate([x for x, _ in second.stream(**spec, stats=refs)])
        spread = np.concatenate([x for x, _ in both.stream(**spec, stats=refs)])
    np.testing.assert_array_equal(spread, alone)
    assert spread.shape == (300, 8, 8, 3)


def test_concurrent_requests_for_one_fit_compute_it_once(stats_server: LiveServer) -> None:
    # Long enough (5 augmented rounds: 1,500 images) that all four requests arrive while it
    # runs (without single flight, each would compute it).
    before = cache_figures(stats_server)
    spec = StreamSpec(**NOISE, featurewise_center=True, horizontal_flip=True)

    def fit(_: int) -> bool:
        with Client(stats_server.url) as client:
            return client.stats(spec, augment=True, rounds=5, seed=21).cached

    with ThreadPoolExecutor(4) as pool:
        cached = list(pool.map(fit, range(4)))
    after = cache_figures(stats_server)
    assert after["computed"] - before["computed"] == 1
    assert sorted(cached) == [False, True, True, True]
