"""``flow`` and ``flow_from_dataframe`` through a live server: a model learns from in-memory
arrays (the lecture's arrays workflow), and both match Keras' legacy iterators side by side."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
pd = pytest.importorskip("pandas")

from augstream import Client  # noqa: E402
from augstream.generator import ImageDataGenerator  # noqa: E402
from augstream_service import Settings, create_app  # noqa: E402
from augstream_service.background import BackgroundServer  # noqa: E402
from tests.imagefolder import make_image_folder  # noqa: E402

pytestmark = [pytest.mark.keras, pytest.mark.slow]
legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("flow") / "pair", per_class=(6, 5))


@pytest.fixture(scope="module")
def url(pair: Path) -> Iterator[str]:
    with BackgroundServer(create_app(Settings(datasets=[pair], threads=2))) as server:
        yield server.url


@pytest.fixture(scope="module")
def table(pair: Path, url: str) -> pd.DataFrame:
    """The folder's files as a table, with a missing file, numeric columns and weights."""
    with Client(url) as client:
        listing = client.files(dataset="pair")
    names = [*listing.files, "cat/missing.png"]
    classes = [name.split("/")[0] for name in names]
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "filename": names,
            "class": classes,
            "value": rng.normal(size=len(names)),
            "count": rng.integers(0, 9, len(names)).astype(np.float64),
            "weight": rng.uniform(0.5, 2, len(names)),
        }
    ).sample(frac=1.0, random_state=3)  # rows in no particular order, as tables are


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.images))
    images = (data.images[order] * (255 / 16)).astype(np.float32)[..., np.newaxis]
    return images, data.target[order]


def test_flow_from_arrays_learns(url: str) -> None:
    """The lecture's arrays workflow: augment in-memory images on the server and train."""
    images, labels = digits()
    onehot = keras.utils.to_categorical(labels, 10)
    x_train, y_train, x_test, y_test = images[:1400], onehot[:1400], images[1400:], onehot[1400:]
    generator = ImageDataGenerator(
        server=url, rescale=1 / 255, width_shift_range=1, height_shift_range=1
    )
    train = generator.flow(x_train, y_train, batch_size=64, seed=0)
    test = ImageDataGenerator(server=url, rescale=1 / 255).flow(
        x_test, y_test, batch_size=128, shuffle=False
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, epochs=5, verbose=0)
    _, accuracy = model.evaluate(test, verbose=0)
    train.close()
    test.close()
    print(f"flow() test accuracy: {accuracy:.3f}")
    assert accuracy > 0.8  # chance is 0.1


@pytest.mark.parametrize("subset", [None, "training", "validation"])
def test_flow_matches_keras_legacy(url: str, subset: str | None) -> None:
    images, labels = digits()
    x, y, w = images[:200], labels[:200], np.linspace(0.5, 1.5, 200)
    split = 0.3 if subset else 0.0
    ours = ImageDataGenerator(server=url, rescale=1 / 255, validation_split=split)
    theirs = legacy.ImageDataGenerator(rescale=1 / 255, validation_split=split)
    args = dict(batch_size=32, shuffle=False, subset=subset)
    mine, keras_it = (
        ours.flow(x, y, sample_weight=w, **args),
        theirs.flow(x, y, sample_weight=w, **args),
    )
    assert len(mine) == len(keras_it) and mine.n == keras_it.n
    for index in range(len(mine)):  # in order: Keras' n-th index gets the n-th batch
        a, b = mine[index], keras_it[index]
        assert len(a) == len(b) == 3
        if subset == "training":
            # Keras' legacy flow splits x and y but not sample_weight (its weights then belong
            # to other rows); augstream keeps each row's weight with its row.
            cut = int(len(x) * split)
            start = cut + index * 32
            np.testing.assert_allclose(a[2], w[start : start + len(a[2])])
            a, b = a[:2], b[:2]
        for got, want in zip(a, b, strict=True):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-6)
    only_x = ours.flow(x, batch_size=8, shuffle=False)
    assert isinstance(only_x[0], np.ndarray) and only_x[0].shape == (8, 8, 8, 1)
    mine.close()
    only_x.close()


FRAME_CASES = [
    ("categorical", "class", None),
    ("binary", "class", None),
    ("sparse", "class", "training"),
    ("raw", "value", "validation"),
    ("raw", ["value", "count"], None),
    ("multi_output", ["value", "count"], None),
    ("input", "class", None),
    (None, "class", "training"),
]


@pytest.mark.parametrize(("class_mode", "y_col", "subset"), FRAME_CASES)
def test_flow_from_dataframe_matches_keras_legacy(
    url: str,
    pair: Path,
    table: pd.DataFrame,
    class_mode: str | None,
    y_col: object,
    subset: str | None,
) -> None:
    split = 0.3 if subset else 0.0
    args = dict(
        y_col=y_col,
        class_mode=class_mode,
        target_size=(20, 24),
        batch_size=4,
        shuffle=False,
        subset=subset,
        weight_col="weight",
    )
    ours = ImageDataGenerator(server=url, rescale=1 / 255, validation_split=split)
    theirs = legacy.ImageDataGenerator(rescale=1 / 255, validation_split=split)
    with pytest.warns(UserWarning, match="invalid image filename"):  # the missing file
        keras_it = theirs.flow_from_dataframe(table, str(pair), **args)
    mine = ours.flow_from_dataframe(table, "pair", **args)
    assert mine.filenames == keras_it.filenames
    assert mine.samples == keras_it.samples and len(mine) == len(keras_it)
    if class_mode in ("categorical", "binary", "sparse"):
        assert mine.class_indices == keras_it.class_indices
        assert list(mine.classes) == list(keras_it.classes)
    a, b = mine[0], keras_it[0]
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    assert len(a) == len(b)
    for got, want in zip(a[1:], b[1:], strict=True):
        if isinstance(want, list):  # multi_output
            assert isinstance(got, list) and len(got) == len(want)
            for g, t in zip(got, want, strict=True):
                np.testing.assert_allclose(g, t)
        elif class_mode != "input":
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert a[0].shape == b[0].shape and a[0].dtype == b[0].dtype
    mine.close()


def test_flow_from_dataframe_without_pandas_and_its_refusals(url: str) -> None:
    generator = ImageDataGenerator(server=url)
    rows = {"filename": ["cat/000.png", "dog/000.png"], "class": ["cat", "dog"]}
    it = generator.flow_from_dataframe(rows, "pair", target_size=(8, 8), batch_size=2)
    x, y = next(it)
    assert x.shape == (2, 8, 8, 3) and y.shape == (2, 2)
    it.close()
    with pytest.raises(ValueError, match="must name a dataset"):
        generator.flow_from_dataframe(rows, None)
    with pytest.raises(KeyError, match="no column 'label'"):
        generator.flow_from_dataframe(rows, "pair", y_col="label")
    with pytest.raises(TypeError, match="must be strings"):
        generator.flow_from_dataframe(
            {"filename": ["a.png"], "class": [1]}, "pair", class_mode="binary"
        )
    with pytest.raises(ValueError, match="rank 4"):
        generator.flow(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="different number of classes"):
        ImageDataGenerator(server=url, validation_split=0.5).flow(
            np.zeros((4, 8, 8, 1)), np.array([0, 0, 1, 1]), subset="training"
        )


def test_tf_dataset_over_rows_with_outputs_and_weights(url: str) -> None:
    tf = pytest.importorskip("tensorflow")
    from augstream.tf import as_dataset

    names = np.asarray(["cat/000.png", "cat/001.jpg", "dog/000.png"])
    with Client(url) as client:
        arrays = {
            "filenames": client.upload(names),
            "y": [client.upload(np.arange(3.0)), client.upload(np.eye(3, dtype=np.int32))],
            "sample_weight": client.upload(np.ones(3, dtype=np.float32)),
        }
        with client.stream(
            dataset="pair",
            arrays=arrays,
            class_mode="multi_output",
            target_size=(8, 8),
            batch_size=2,
            epochs=1,
        ) as stream:
            dataset = as_dataset(stream)
            x_spec, (y0, y1), w_spec = dataset.element_spec
            assert x_spec.shape.as_list() == [None, 8, 8, 3]
            assert (y0.dtype, y1.dtype, w_spec.dtype) == (tf.float64, tf.int32, tf.float32)
            assert y1.shape.as_list() == [None, 3]
            assert sum(int(x.shape[0]) for x, _, _ in dataset) == 3


def test_dataframe_classes_come_from_valid_rows_in_the_given_order(url: str) -> None:
    """Keras drops invalid files before it finds the classes, and keeps ``classes`` in the
    order given."""
    rows = pd.DataFrame(
        {
            "filename": ["dog/000.png", "cat/000.png", "cat/missing.png"],
            "class": ["dog", "cat", "bird"],
        }
    )
    generator = ImageDataGenerator(server=url)
    found = generator.flow_from_dataframe(rows, "pair", target_size=(8, 8), shuffle=False)
    assert found.class_indices == {"cat": 0, "dog": 1}  # no "bird": its only file is missing
    _, y = found[0]
    assert y.shape == (2, 2) and found.filenames == ["dog/000.png", "cat/000.png"]
    ordered = generator.flow_from_dataframe(
        rows, "pair", classes=["dog", "cat"], target_size=(8, 8), shuffle=False
    )
    assert ordered.class_indices == {"dog": 0, "cat": 1}
    assert list(ordered.classes) == [0, 1]
    found.close()
    ordered.close()
