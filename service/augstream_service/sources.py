"""List a dataset's images and their labels, in one of two layouts.

- ``folders``: ``flow_from_directory``'s: one subfolder per class, class names sorted, files
  sorted folder by folder within each class.
- ``manifest``: a CSV or JSON Lines file with a path column (relative to the manifest) and a
  label column; the only layout for web servers, which cannot be listed.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np

from .stores import SourceError, Store, refuse_relative

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_MANIFEST_BYTES",
    "Listing",
    "SourceError",
    "list_class_folders",
    "list_manifest",
    "refuse_relative",
    "why_empty",
]

#: Keras' list plus WebP, compared case-insensitively.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})

#: A manifest of a million rows fits; a runaway file does not.
MAX_MANIFEST_BYTES = 256 << 20


@dataclass(frozen=True)
class Listing:
    """The images of a dataset: relative paths and integer labels, in a fixed order."""

    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray[Any, np.dtype[np.int64]]

    @property
    def class_indices(self) -> dict[str, int]:
        """Class name -> label, as Keras' ``class_indices``."""
        return {name: i for i, name in enumerate(self.class_names)}

    def select(self, classes: list[str]) -> Listing:
        """Only the images of ``classes``, relabelled in the given order (Keras' ``classes=``)."""
        old = self.class_indices
        missing = [c for c in classes if c not in old]
        if missing:
            raise KeyError(f"unknown classes {missing}; the dataset has {list(self.class_names)}")
        relabel = np.full(len(self.class_names), -1, dtype=np.int64)
        for new, name in enumerate(classes):
            relabel[old[name]] = new
        labels = relabel[self.labels]
        # Keep Keras' order: class by class in the order given, files sorted within a class.
        order = np.concatenate([np.flatnonzero(labels == i) for i in range(len(classes))])
        return Listing(
            class_names=tuple(classes),
            files=tuple(self.files[i] for i in order),
            labels=labels[order],
        )

    def split(self, validation_split: float, subset: str) -> Listing:
        """Keras' split: per class, the first ``validation_split`` of the files is the
        validation subset and the rest the training subset."""
        keep: list[int] = []
        for label in range(len(self.class_names)):
            members = np.flatnonzero(self.labels == label)
            cut = int(validation_split * len(members))
            keep += (members[:cut] if subset == "validation" else members[cut:]).tolist()
        return Listing(
            class_names=self.class_names,
            files=tuple(self.files[i] for i in keep),
            labels=self.labels[keep],
        )


def _is_image(relative: str) -> bool:
    return posixpath.splitext(relative)[1].lower() in IMAGE_EXTENSIONS


def list_class_folders(store: Store) -> Listing:
    """The store's class subfolders and their images, in Keras' order."""
    files: list[str] = []
    labels: list[int] = []
    classes = store.folders()
    for label, name in enumerate(classes):
        found = [f for f in store.files_below(name) if _is_image(f)]
        # Keras' order: folders sorted by their path string, files sorted within each.
        found.sort(key=lambda f: (posixpath.dirname(f), posixpath.basename(f)))
        files += found
        labels += [label] * len(found)
    return Listing(
        class_names=tuple(classes), files=tuple(files), labels=np.array(labels, dtype=np.int64)
    )


def why_empty(store: Store, name: str) -> str:
    """Why a dataset listed as class folders (``flow_from_directory``'s layout) holds no
    images, in words that say which layout is expected."""
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    expected = (
        f"a dataset is a folder with one subfolder per class ({name}/cat/*.jpg, "
        f"{name}/dog/*.jpg, ...)"
    )
    classes = store.folders()
    if not classes:
        loose = [f for f in store.files_below("") if _is_image(f)]
        if loose:
            return (
                f"its {len(loose)} images lie at its top level, with no class folders: "
                f"{expected}; move them into class folders (a single folder makes one "
                "class), or list them with their labels in a manifest"
            )
        return f"it holds no images ({extensions}): {expected}"
    return f"its class folders {classes[:5]} hold no images ({extensions}): {expected}"


def list_manifest(
    store: Store, manifest: str, path_column: str = "path", label_column: str = "label"
) -> Listing:
    """The images a manifest names, class by class (class names sorted, as Keras sorts
    folders; rows in the manifest's order within a class). Every named file must exist."""
    rows = _manifest_rows(store.read(manifest, MAX_MANIFEST_BYTES), manifest)
    base = posixpath.dirname(manifest)
    files: list[str] = []
    names: list[str] = []
    for number, row in enumerate(rows, start=1):
        where = f"manifest {manifest!r} row {number}"
        path, label = row.get(path_column), row.get(label_column)
        if not isinstance(path, str) or not path:
            raise SourceError(f"{where} has no {path_column!r}")
        if label is None or label == "":
            raise SourceError(f"{where} has no {label_column!r}")
        relative = posixpath.normpath(posixpath.join(base, path))
        problem = refuse_relative(relative) or (None if _is_image(relative) else "not an image")
        if problem is not None:
            raise SourceError(f"{where}: {path!r}: {problem}")
        files.append(relative)
        names.append(str(label))
    _check_present(store, manifest, files)
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[name] for name in names], dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    return Listing(
        class_names=tuple(classes),
        files=tuple(files[i] for i in order),
        labels=labels[order],
    )


def _manifest_rows(data: bytes, manifest: str) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"manifest {manifest!r} is not UTF-8 text") from exc
    if manifest.lower().endswith(".csv"):
        return list(csv.DictReader(io.StringIO(text)))
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"manifest {manifest!r} line {number}: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise SourceError(f"manifest {manifest!r} line {number} is not an object")
        rows.append(row)
    return rows


def _check_present(store: Store, manifest: str, files: list[str]) -> None:
    if store.can_list:
        below = set(store.files_below(posixpath.dirname(manifest)))
        missing = [f for f in files if f not in below]
    else:
        missing = [f for f, ok in zip(files, store.exist(files), strict=True) if not ok]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SourceError(f"manifest {manifest!r} names {missing[0]!r}{more}, which does not exist")
