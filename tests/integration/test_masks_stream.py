"""Image + mask pairs and the newer operations, streamed by a live server to the client."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from augstream import Client, InvalidSpecError
from augstream.stream import Batch
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.imagefolder import MASK_PALETTE, make_image_folder, make_mask_folder


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    root = tmp_path_factory.mktemp("masks")
    folders = [make_mask_folder(root / "seg"), make_image_folder(root / "pets")]
    app = create_app(Settings(datasets=folders, threads=2))
    with BackgroundServer(app) as server, Client(server.url) as c:
        yield c


def batches(client: Client, **fields: object) -> list[Batch]:
    out = []
    with client.stream(**fields) as stream:
        while True:
            try:
                out.append(stream.next_batch(timeout=30))
            except StopIteration:
                return out


def classes_of(x: np.ndarray) -> np.ndarray:
    colours = np.array(list(MASK_PALETTE.values()), dtype=np.int32)
    distance = np.abs(x[..., np.newaxis, :].astype(np.int32) - colours).sum(axis=-1)
    return np.array(list(MASK_PALETTE), dtype=np.uint8)[distance.argmin(axis=-1)]


def test_masks_stream_aligned_with_their_images(client: Client) -> None:
    fields = dict(
        dataset="seg",
        class_mode="mask",
        target_size=(24, 32),
        keep_aspect_ratio=True,
        interpolation_order=0,
        rotation_range=40,
        zoom_range=0.3,
        horizontal_flip=True,
        fill_mode="reflect",
        random_crop_fraction=0.8,
        contrast_range=(0.9, 1.1),
        validation_split=0.25,
        subset="training",
        batch_size=4,
        seed=3,
        epochs=1,
    )
    listing = client.files(**fields)
    names = [f"images/{n:03d}.png" for n in range(12) if n not in (1, 2)]
    every = sorted([*names, "images/002.jpg", "images/sub/001.png"])
    assert listing.files == every[3:]  # sorted paths; the first quarter is the validation subset
    assert listing.masks == [
        f.replace("images/", "masks/").rsplit(".", 1)[0] + ".png" for f in listing.files
    ]
    produced = batches(client, **fields)
    assert sum(len(b.sample_ids) for b in produced) == 9  # 12 images, the first 3 validate
    for batch in produced:
        assert batch.x.dtype == np.uint8 and batch.x.shape[1:] == (24, 32, 3)
        assert isinstance(batch.y, np.ndarray)
        assert batch.y.dtype == np.uint8 and batch.y.shape == (len(batch.x), 24, 32, 1)
        for sample_id, x, y in zip(batch.sample_ids, batch.x, batch.y, strict=True):
            if listing.files[sample_id].endswith(".jpg"):
                continue  # JPEG smears the colours at the shapes' edges
            # Contrast moves colours a little; the nearest palette colour still names the class.
            np.testing.assert_array_equal(classes_of(x), y[:, :, 0])
    again = batches(client, **fields)
    assert [b.x.tobytes() for b in again] == [b.x.tobytes() for b in produced]
    assert [np.asarray(b.y).tobytes() for b in again] == [
        np.asarray(b.y).tobytes() for b in produced
    ]


def test_a_dataset_without_masks_is_refused_by_name(client: Client) -> None:
    with pytest.raises(InvalidSpecError, match="images/ folder"):
        client.files(dataset="pets", class_mode="mask")


def test_newer_operations_and_cutmix_stream_reproducibly(client: Client) -> None:
    fields = dict(
        dataset="pets",
        target_size=(32, 32),
        batch_size=8,
        seed=5,
        epochs=1,
        random_resized_crop_scale=(0.5, 1.0),
        hue_shift_range=20,
        blur_sigma_range=(0.0, 1.0),
        jpeg_quality_range=(30, 90),
        erasing_probability=0.5,
        cutmix_alpha=1.0,
        mixup_alpha=0.4,
    )
    first = batches(client, **fields)
    second = batches(client, **fields)
    assert [b.x.tobytes() for b in first] == [b.x.tobytes() for b in second]
    # Mixed batches are a pure function of their position: a resumed stream agrees.
    resumed = batches(client, **{**fields, "start": (0, 1)})
    assert [b.x.tobytes() for b in resumed] == [b.x.tobytes() for b in first[1:]]
    assert [np.asarray(b.y).tobytes() for b in resumed] == [
        np.asarray(b.y).tobytes() for b in first[1:]
    ]
    y = np.concatenate([np.asarray(b.y) for b in first])
    assert y.shape == (19, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    assert ((y > 0) & (y < 1)).any()  # some labels are mixed
    # Without the batch operations the images differ (cutmix and mixup did something), but
    # each sample's own operations are the same.
    alone = batches(client, **{**fields, "cutmix_alpha": 0.0, "mixup_alpha": 0.0})
    assert alone[0].sample_ids == first[0].sample_ids
    assert not np.array_equal(alone[0].x, first[0].x)
    assert {tuple(row) for row in np.concatenate([np.asarray(b.y) for b in alone])} <= {
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
    }


def test_jpeg_quality_needs_8_bit_uploads(client: Client) -> None:
    images = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32)
    digest = client.upload(images)
    fields = dict(arrays={"x": digest}, target_size=(8, 8), class_mode="none", dtype="float32")
    with pytest.raises(InvalidSpecError, match="jpeg_quality_range"):
        client.files(**fields, jpeg_quality_range=(50, 90))
    assert len(client.files(**fields, noise_std_range=(0.0, 0.1)).rows or []) == 4


def test_the_catalog_counts_a_mask_datasets_pairs(client: Client) -> None:
    seg, pets = client.dataset("seg"), client.dataset("pets")
    # Its "classes" are the two folders; what a mask stream reads is the 12 pairs.
    assert seg.mask_pairs == 12 and set(seg.class_indices) == {"images", "masks"}
    assert pets.mask_pairs is None
    assert [d.mask_pairs for d in client.datasets()] == [None, 12]  # sorted: pets, seg
