"""Folder listing follows flow_from_directory, and never leaves the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augstream_service.catalog import Catalog, UnknownDatasetError
from augstream_service.sources import SourceError, list_class_folders, read_file


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
    listing = list_class_folders(tmp_path)
    assert listing.class_names == ("a", "b", "c")
    assert listing.files == ("a/0.jpeg", "a/z/deep.tiff", "b/1.png", "b/2.JPG")
    assert listing.labels.tolist() == [0, 0, 1, 1]
    assert listing.class_indices == {"a": 0, "b": 1, "c": 2}


def test_select_classes_relabels_in_the_given_order(tmp_path: Path) -> None:
    for rel in ["a/1.png", "b/1.png", "b/2.png", "c/1.png"]:
        touch(tmp_path / rel)
    listing = list_class_folders(tmp_path).select(["c", "b"])
    assert listing.class_names == ("c", "b")
    assert listing.files == ("c/1.png", "b/1.png", "b/2.png")
    assert listing.labels.tolist() == [0, 1, 1]
    with pytest.raises(KeyError, match="unknown classes"):
        list_class_folders(tmp_path).select(["zebra"])


def test_symlinks_out_of_the_root_are_ignored(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    touch(outside)
    root = tmp_path / "data"
    touch(root / "a" / "ok.png")
    os.symlink(outside, root / "a" / "leak.png")
    os.symlink(tmp_path, root / "a" / "up")
    assert list_class_folders(root).files == ("a/ok.png",)


def test_read_file_limits_and_errors(tmp_path: Path) -> None:
    touch(tmp_path / "a.png", b"12345")
    assert read_file(tmp_path, "a.png", 5) == b"12345"
    with pytest.raises(SourceError, match="larger than the limit"):
        read_file(tmp_path, "a.png", 4)
    with pytest.raises(SourceError, match=r"cannot read 'gone\.png'"):
        read_file(tmp_path, "gone.png", 10)


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        list_class_folders(tmp_path / "nope")


def test_catalog_names_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "x" / "cats").mkdir(parents=True)
    (tmp_path / "y" / "cats").mkdir(parents=True)
    catalog = Catalog.from_folders([tmp_path / "x" / "cats"])
    assert catalog.names() == ["cats"]
    with pytest.raises(UnknownDatasetError, match=r"'dogs'.*cats"):
        catalog.get("dogs")
    with pytest.raises(ValueError, match="two datasets are named 'cats'"):
        Catalog.from_folders([tmp_path / "x" / "cats", tmp_path / "y" / "cats"])
