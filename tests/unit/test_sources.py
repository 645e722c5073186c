"""Folder listing follows flow_from_directory, and never leaves the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augstream_service.catalog import Catalog, UnknownDatasetError
from augstream_service.sources import SourceError, list_class_folders, list_manifest
from augstream_service.stores import Store


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_listing_order_labels_and_extensions(tmp_path: Path) -> None:
    for rel in [
        "b/2.JPG",
        "b/1.png",
        "a/z/deep.tiff",
        "a/0.jpeg",
        "a/readme.txt",
        "c/.keep",
        "top.png",
        ".hidden/3.png",
    ]:
        touch(tmp_path / rel)
    listing = list_class_folders(Store(str(tmp_path)))
    assert listing.class_names == ("a", "b", "c")
    assert listing.files == ("a/0.jpeg", "a/z/deep.tiff", "b/1.png", "b/2.JPG")
    assert listing.labels.tolist() == [0, 0, 1, 1]
    assert listing.class_indices == {"a": 0, "b": 1, "c": 2}


def test_select_classes_relabels_in_the_given_order(tmp_path: Path) -> None:
    for rel in ["a/1.png", "b/1.png", "b/2.png", "c/1.png"]:
        touch(tmp_path / rel)
    listing = list_class_folders(Store(str(tmp_path))).select(["c", "b"])
    assert listing.class_names == ("c", "b")
    assert listing.files == ("c/1.png", "b/1.png", "b/2.png")
    assert listing.labels.tolist() == [0, 1, 1]
    with pytest.raises(KeyError, match="unknown classes"):
        list_class_folders(Store(str(tmp_path))).select(["zebra"])


def test_symlinks_out_of_the_root_are_ignored(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    touch(outside)
    root = tmp_path / "data"
    touch(root / "a" / "ok.png")
    os.symlink(outside, root / "a" / "leak.png")
    os.symlink(tmp_path, root / "a" / "up")
    assert list_class_folders(Store(str(root))).files == ("a/ok.png",)


def test_reads_keep_to_limits_and_name_the_file(tmp_path: Path) -> None:
    touch(tmp_path / "a.png", b"12345")
    touch(tmp_path / "e.png", b"")
    store = Store(str(tmp_path), retries=0)
    assert store.read("a.png", 5) == b"12345"
    assert store.read("e.png", 5) == b""
    with pytest.raises(SourceError, match="larger than the limit"):
        store.read("a.png", 4)
    with pytest.raises(SourceError, match=r"'gone\.png': does not exist"):
        store.read("gone.png", 10)
    found = store.read_many(["a.png", "../x.png", "gone.png"], 10)
    assert found[0] == b"12345"
    assert isinstance(found[1], SourceError) and "leaves the dataset" in str(found[1])
    assert isinstance(found[2], SourceError)
    assert str(tmp_path) not in str(found[2])  # client-facing: no server paths


def test_manifest_rows_relative_to_the_manifest_class_by_class(tmp_path: Path) -> None:
    for rel in ["imgs/1.png", "imgs/2.png", "imgs/3.png"]:
        touch(tmp_path / "m" / rel)
    (tmp_path / "m" / "train.csv").write_text(
        "path,label\nimgs/3.png,dog\nimgs/1.png,cat\nimgs/2.png,dog\n"
    )
    (tmp_path / "m" / "rows.jsonl").write_text(
        '{"file": "imgs/2.png", "y": 1}\n\n{"file": "imgs/1.png", "y": 0}\n'
    )
    store = Store(str(tmp_path))
    listing = list_manifest(store, "m/train.csv")
    assert listing.class_names == ("cat", "dog")
    assert listing.files == ("m/imgs/1.png", "m/imgs/3.png", "m/imgs/2.png")
    assert listing.labels.tolist() == [0, 1, 1]
    jsonl = list_manifest(store, "m/rows.jsonl", path_column="file", label_column="y")
    assert jsonl.class_names == ("0", "1") and jsonl.files == ("m/imgs/1.png", "m/imgs/2.png")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("path,label\nimgs/9.png,cat\n", r"names 'm/imgs/9\.png', which does not exist"),
        ("path,label\n../../etc/passwd.png,cat\n", "row 1.*leaves the dataset"),
        ("path,label\nimgs/1.png,\n", "row 1 has no 'label'"),
        ("path,label\nimgs/1.txt,cat\n", "not an image"),
    ],
)
def test_bad_manifests_are_named(tmp_path: Path, rows: str, message: str) -> None:
    touch(tmp_path / "m" / "imgs" / "1.png")
    (tmp_path / "m" / "train.csv").write_text(rows)
    with pytest.raises(SourceError, match=message):
        list_manifest(Store(str(tmp_path)), "m/train.csv")


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list_class_folders(Store(str(tmp_path / "nope")))


def test_catalog_names_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "x" / "cats").mkdir(parents=True)
    (tmp_path / "y" / "cats").mkdir(parents=True)
    catalog = Catalog.from_folders([tmp_path / "x" / "cats"])
    assert catalog.names() == ["cats"]
    with pytest.raises(UnknownDatasetError, match=r"'dogs'.*cats"):
        catalog.get("dogs")
    with pytest.raises(ValueError, match="two datasets are named 'cats'"):
        Catalog.from_folders([tmp_path / "x" / "cats", tmp_path / "y" / "cats"])
