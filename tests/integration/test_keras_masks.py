"""A segmentation model trains on a mask stream through the ImageDataGenerator front end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from augstream.generator import ImageDataGenerator  # noqa: E402
from augstream_service import Settings, create_app  # noqa: E402
from augstream_service.background import BackgroundServer  # noqa: E402
from tests.imagefolder import make_mask_folder  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    seg: Path = make_mask_folder(tmp_path_factory.mktemp("keras-masks") / "seg")
    with BackgroundServer(create_app(Settings(datasets=[seg], threads=2))) as server:
        yield server.url


def test_fit_on_a_mask_stream(url: str) -> None:
    gen = ImageDataGenerator(
        server=url,
        rotation_range=15,
        horizontal_flip=True,
        fill_mode="reflect",
        rescale=1 / 255,
        validation_split=0.25,
        random_resized_crop_scale=(0.6, 1.0),
        saturation_range=(0.8, 1.2),
    )
    train = gen.flow_from_directory(
        "seg", target_size=(32, 32), class_mode="mask", batch_size=4, subset="training", seed=1
    )
    x, y = next(train)
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (4, 32, 32, 1) and y.dtype == np.uint8 and int(y.max()) <= 3
    assert train.filenames[0].startswith("images/") and len(train) == 3

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(4, 1, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    history = model.fit(train, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # Per pixel, the model's classes come back with the masks' shape.
    assert model.predict(x, verbose=0).argmax(axis=-1).shape == (4, 32, 32)
    train.close()
