"""Find a dataset's images and read their bytes (local folders for now).

The layout is ``flow_from_directory``'s: one subfolder per class, class names sorted,
files found by walking each class folder in sorted order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "Listing",
    "SourceError",
    "list_class_folders",
    "inside_root",
    "read_file",
    "refuse_relative",
]

#: Keras' list plus WebP, compared case-insensitively.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})


class SourceError(OSError):
    """A dataset file could not be listed or read."""


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


def inside_root(path: Path, root: Path) -> bool:
    """Whether ``path``, symlinks followed, lies inside the resolved ``root``."""
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def list_class_folders(root: Path) -> Listing:
    """List ``root``'s class subfolders and their images (symlinks leaving ``root`` ignored)."""
    root = root.resolve()
    if not root.is_dir():
        raise SourceError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    )
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        # Keras' order: folders sorted by their path string, files sorted within each.
        for dirpath, _, filenames in sorted(os.walk(root / name), key=lambda walked: walked[0]):
            for filename in sorted(filenames):
                path = Path(dirpath, filename)
                if path.suffix.lower() in IMAGE_EXTENSIONS and inside_root(path, root):
                    files.append(path.relative_to(root).as_posix())
                    labels.append(label)
    return Listing(
        class_names=tuple(classes), files=tuple(files), labels=np.array(labels, dtype=np.int64)
    )


def refuse_relative(name: str) -> str | None:
    """Why ``name`` cannot name a file inside a dataset, or None when it can.

    Names are relative, "/"-separated and stay below the root: no absolute paths, no "..",
    no NUL, no backslashes (which would mean something else on another server).
    """
    if not name:
        return "empty file name"
    if "\0" in name:
        return "file name contains NUL"
    if "\\" in name:
        return f"{name!r} contains a backslash; use '/' between folders"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"{name!r} is absolute; file names are relative to the dataset"
    if ".." in name.split("/"):
        return f"{name!r} leaves the dataset"
    return None


def read_file(root: Path, relative: str, max_bytes: int) -> bytes:
    """The bytes of ``root / relative``, refusing files over ``max_bytes`` and paths that
    lead out of ``root`` (through "..", or a symlink)."""
    problem = refuse_relative(relative)
    if problem is not None:
        raise SourceError(problem)
    path = root / relative
    if not inside_root(path, root.resolve()):
        raise SourceError(f"{relative!r} leads out of the dataset")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {relative!r}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise SourceError(f"{relative!r} is larger than the limit of {max_bytes} bytes")
    return data
