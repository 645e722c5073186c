"""The datasets a server offers, by name. Clients name these, never paths."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .sources import Listing, SourceError, list_class_folders

__all__ = [
    "Catalog",
    "CorruptPolicy",
    "Dataset",
    "DatasetUnavailableError",
    "UnknownDatasetError",
]

log = logging.getLogger("augstream.catalog")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DatasetUnavailableError(RuntimeError):
    """A registered dataset cannot be listed right now (its folder is gone or unreadable)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"dataset {name!r} is unavailable on this server right now")
        self.name = name


class UnknownDatasetError(LookupError):
    """No dataset of that name is registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        super().__init__(f"unknown dataset {name!r}; this server has {known_list}")
        self.name = name


CorruptPolicy = Literal["error", "skip"]


@dataclass
class Dataset:
    """A named folder of class subfolders; listed once, on first use, then reused.

    ``on_corrupt`` says what a stream does with an image that cannot be read or decoded:
    ``error`` ends the stream with an error frame naming it, ``skip`` leaves it out of its
    batch and reports its id and the reason in that batch.
    """

    name: str
    root: Path
    on_corrupt: CorruptPolicy = "error"
    _listing: Listing | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def listing(self) -> Listing:
        """The dataset's files and labels (computed once)."""
        with self._lock:
            if self._listing is None:
                try:
                    self._listing = list_class_folders(self.root)
                except SourceError as exc:
                    # The detail names server paths: it goes to the log, not to clients.
                    log.error("cannot list dataset %s: %s", self.name, exc)
                    raise DatasetUnavailableError(self.name) from exc
            return self._listing


class Catalog:
    """Name -> dataset. Built by the operator; read-only while serving."""

    def __init__(self, datasets: Iterable[Dataset] = ()) -> None:
        self._datasets: dict[str, Dataset] = {}
        for dataset in datasets:
            self.add(dataset)

    @classmethod
    def from_folders(
        cls,
        folders: Iterable[Path],
        on_corrupt: CorruptPolicy = "error",
        policies: Mapping[str, CorruptPolicy] | None = None,
    ) -> Catalog:
        """One dataset per folder, named after the folder; corrupt images handled by
        ``policies[name]``, else ``on_corrupt``."""
        roots = [Path(folder).resolve() for folder in folders]
        policies = policies or {}
        return cls(
            Dataset(name=root.name, root=root, on_corrupt=policies.get(root.name, on_corrupt))
            for root in roots
        )

    def add(self, dataset: Dataset) -> None:
        """Register ``dataset``; names must be unique and URL-safe."""
        if not _NAME.match(dataset.name):
            raise ValueError(f"dataset name {dataset.name!r} must match {_NAME.pattern}")
        if dataset.name in self._datasets:
            raise ValueError(
                f"two datasets are named {dataset.name!r} "
                f"({self._datasets[dataset.name].root} and {dataset.root})"
            )
        self._datasets[dataset.name] = dataset

    def get(self, name: str) -> Dataset:
        """The dataset called ``name``."""
        try:
            return self._datasets[name]
        except KeyError:
            raise UnknownDatasetError(name, self._datasets) from None

    def names(self) -> list[str]:
        """Registered dataset names, sorted."""
        return sorted(self._datasets)
