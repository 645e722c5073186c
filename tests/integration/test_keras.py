"""Keras through a live server: training learns, the PyDataset is exact with several workers,
and the front end matches Keras' legacy ImageDataGenerator on the same folder."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from augstream import Client  # noqa: E402
from augstream._demo import write_digits  # noqa: E402
from augstream.generator import ImageDataGenerator  # noqa: E402
from augstream.keras import InputStallMonitor, StreamDataset  # noqa: E402
from augstream_service import Settings, create_app  # noqa: E402
from augstream_service.background import BackgroundServer  # noqa: E402
from tests.imagefolder import make_image_folder  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]
legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")

DIGITS = dict(target_size=(28, 28), color_mode="grayscale", batch_size=32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keras")
    found = write_digits(root)
    # A two-class folder with a nested image and a stray file, for the side-by-side test.
    found["pair"] = make_image_folder(root / "pair", per_class=(5, 4))
    return found


@pytest.fixture(scope="module")
def url(folders: dict[str, Path]) -> Iterator[str]:
    app = create_app(Settings(datasets=list(folders.values()), threads=2))
    with BackgroundServer(app) as server:
        yield server.url


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def test_plain_generator_path_learns(url: str) -> None:
    with Client(url) as client:
        train = client.stream(dataset="digits-train", seed=1, rescale=1 / 255, **DIGITS)
        model = small_model()
        model.fit(train.generator(), steps_per_epoch=len(train), epochs=3, verbose=0)
        train.close()
        test = client.stream(
            dataset="digits-test", shuffle=False, epochs=1, rescale=1 / 255, **DIGITS
        )
        _, accuracy = model.evaluate(test.generator(), steps=len(test), verbose=0)
    assert accuracy > 0.8  # chance is 0.1


def test_pydataset_path_learns_with_validation_and_reports_stalls(url: str) -> None:
    generator = ImageDataGenerator(server=url, rescale=1 / 255)
    train = generator.flow_from_directory("digits-train", seed=3, **DIGITS)
    valid = generator.flow_from_directory("digits-valid", shuffle=False, **DIGITS)
    monitor = InputStallMonitor(print_fn=lambda _: None)
    model = small_model()
    history = model.fit(train, validation_data=valid, epochs=3, verbose=0, callbacks=[monitor])
    assert history.history["val_accuracy"][-1] > 0.8
    assert len(monitor.history) == 3
    assert all(0 <= r["input_wait_fraction"] <= 1 for r in monitor.history)
    predictions = model.predict(valid, verbose=0)
    assert predictions.shape == (valid.samples, 10)
    for iterator in (train, valid):
        iterator.close()


def test_stream_dataset_delivers_each_batch_once_with_several_workers(url: str) -> None:
    spec = dict(dataset="pair", seed=5, target_size=(12, 12), batch_size=2, rotation_range=30)
    with Client(url) as client, client.stream(**spec) as stream:
        expected = [stream.next_batch() for _ in range(2 * len(stream))]
    per_epoch = len(expected) // 2
    dataset = StreamDataset(url, workers=4, **spec)
    for epoch in range(2):
        order = list(range(per_epoch))
        random.Random(epoch).shuffle(order)
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def fetch(indices: list[int], into: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
            for i in indices:
                into[i] = dataset[i]

        threads = [threading.Thread(target=fetch, args=(order[k::4], results)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each batch of the stream's epoch arrives exactly once, whatever the order asked.
        got = sorted(x.tobytes() + y.tobytes() for x, y in results.values())
        want = expected[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert got == sorted(b.x.tobytes() + b.y.tobytes() for b in want)
        # Asking again for an index gives the same batch.
        again_x, _ = dataset[order[0]]
        assert again_x.tobytes() == results[order[0]][0].tobytes()
        dataset.on_epoch_end()
    dataset.close()


@pytest.mark.parametrize("class_mode", ["categorical", "binary", "sparse", "input", None])
@pytest.mark.parametrize("subset", [None, "training", "validation"])
def test_front_end_matches_keras_legacy_on_the_same_folder(
    url: str, folders: dict[str, Path], class_mode: str | None, subset: str | None
) -> None:
    split = 0.4 if subset else 0.0
    args = dict(
        target_size=(20, 24), class_mode=class_mode, batch_size=4, shuffle=False, subset=subset
    )
    ours = ImageDataGenerator(server=url, rescale=1 / 255, validation_split=split)
    theirs = legacy.ImageDataGenerator(rescale=1 / 255, validation_split=split)
    mine = ours.flow_from_directory("pair", **args)
    keras_it = theirs.flow_from_directory(str(folders["pair"]), **args)
    assert mine.class_indices == keras_it.class_indices
    assert mine.samples == keras_it.samples
    assert mine.filenames == keras_it.filenames
    np.testing.assert_array_equal(mine.classes, keras_it.classes)
    assert len(mine) == len(keras_it)
    assert mine.image_shape == keras_it.image_shape
    a, b = mine[0], keras_it[0]
    if class_mode is None:
        assert a.shape == b.shape and a.dtype == b.dtype
    else:
        assert a[0].shape == b[0].shape and a[0].dtype == b[0].dtype
        assert a[1].shape == b[1].shape and a[1].dtype == b[1].dtype
        if class_mode != "input":
            np.testing.assert_array_equal(a[1], b[1])
    mine.close()


def test_training_and_validation_subsets_are_disjoint_and_complete(
    url: str, folders: dict[str, Path]
) -> None:
    generator = ImageDataGenerator(server=url, validation_split=0.25)
    train = generator.flow_from_directory("digits-train", subset="training", **DIGITS)
    valid = generator.flow_from_directory("digits-train", subset="validation", **DIGITS)
    assert not set(train.filenames) & set(valid.filenames)
    assert train.samples + valid.samples == len(list(folders["train"].rglob("*.png")))
    train.close()
    valid.close()


def test_front_end_rejects_what_it_cannot_do(url: str) -> None:
    unfitted = ImageDataGenerator(server=url, featurewise_center=True)
    with pytest.raises(ValueError, match="hasn't been fit on any training data"):
        unfitted.flow_from_directory("pair", target_size=(8, 8))
    with pytest.raises(ValueError, match="rotation_range"):
        ImageDataGenerator(server=url, rotation_range=-5)
    generator = ImageDataGenerator(server=url)
    with pytest.raises(ValueError, match="names a dataset on the server"):
        generator.flow_from_directory("data/train")
    with pytest.raises(ValueError, match="save_to_dir"):
        generator.flow_from_directory("pair", save_to_dir="/tmp/x")


def test_preprocessing_function_channels_first_and_next(url: str) -> None:
    generator = ImageDataGenerator(
        server=url,
        preprocessing_function=lambda image: 255.0 - image,
        rescale=1 / 255,
        data_format="channels_first",
    )
    inverted = generator.flow_from_directory("pair", target_size=(8, 8), shuffle=False)
    plain = ImageDataGenerator(server=url, rescale=1 / 255).flow_from_directory(
        "pair", target_size=(8, 8), shuffle=False
    )
    x_inv, _ = next(inverted)
    x, _ = plain.next()
    assert x_inv.shape == (inverted.samples, 3, 8, 8)
    np.testing.assert_allclose(x_inv, 1.0 - x.transpose(0, 3, 1, 2), atol=1e-6)
    inverted.close()
    plain.close()


def test_tf_dataset_adapter(url: str) -> None:
    tf = pytest.importorskip("tensorflow")
    from augstream.tf import as_dataset

    with (
        Client(url) as client,
        client.stream(dataset="digits-valid", shuffle=False, epochs=1, **DIGITS) as stream,
    ):
        dataset = as_dataset(stream)
        x_spec, y_spec = dataset.element_spec
        assert x_spec.shape.as_list() == [None, 28, 28, 1] and x_spec.dtype == tf.uint8
        assert y_spec.shape.as_list() == [None, 10] and y_spec.dtype == tf.float32
        total = sum(int(x.shape[0]) for x, _ in dataset)
    assert total == stream.samples
