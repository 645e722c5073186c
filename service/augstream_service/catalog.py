"""The datasets a server offers, by name. Clients name these, never paths."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .limits import shown
from .sources import Listing, SourceError, list_class_folders, list_manifest, why_empty
from .stores import Store, refuse_relative

__all__ = [
    "RECHECK_S",
    "Catalog",
    "CorruptPolicy",
    "Dataset",
    "DatasetConfig",
    "DatasetUnavailableError",
    "UnknownDatasetError",
]

log = logging.getLogger("augstream.catalog")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Seconds a dataset that could not be listed answers with that failure before its store is
#: asked again (the 503's Retry-After says so): a store that takes its retries' worth of
#: seconds to fail must not make every request that lists the datasets wait as long.
RECHECK_S = 5.0


class DatasetUnavailableError(RuntimeError):
    """A registered dataset cannot be listed right now (its store is down, refuses the
    server's credentials, or its manifest names files that are not there)."""

    def __init__(self, name: str, reason: str, *, transient: bool = True) -> None:
        super().__init__(f"dataset {name!r} is unavailable: {reason}")
        self.name = name
        #: Whether trying again later may work (the store did not answer).
        self.transient = transient


class UnknownDatasetError(LookupError):
    """No dataset of that name is registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        super().__init__(f"unknown dataset {shown(name)!r}; this server has {known_list}")
        self.name = name


CorruptPolicy = Literal["error", "skip"]


class DatasetConfig(BaseModel):
    """One dataset as the operator registers it (a ``[catalog.NAME]`` table of the config file,
    or ``AUGSTREAM_CATALOG``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="A folder, or an fsspec URL: s3://, gs://, http(s)://, file://")
    layout: Literal["folders", "manifest"] = "folders"
    #: The manifest file, relative to ``url`` (CSV, or JSON Lines).
    manifest: str | None = None
    path_column: str = "path"
    label_column: str = "label"
    #: fsspec options of the store, e.g. {"endpoint_url": "http://minio:9000", "anon": true}.
    storage_options: dict[str, Any] = Field(default_factory=dict)
    #: Storage options read from environment variables: {"secret": "LAB_S3_SECRET"}.
    storage_options_env: dict[str, str] = Field(default_factory=dict)
    #: Storage options read from files, as docker and kubernetes mount secrets:
    #: {"secret": "/run/secrets/s3_secret"} (surrounding whitespace dropped).
    storage_options_files: dict[str, Path] = Field(default_factory=dict)
    on_corrupt: CorruptPolicy | None = None
    #: Re-list after this many seconds (none: list once; ``POST .../refresh`` re-lists).
    listing_ttl_s: Annotated[float, Field(gt=0)] | None = None
    #: Keep this dataset's bytes and decoded images in the shared caches.
    cache: bool = True
    #: Further attempts after a transient store failure (capped exponential backoff).
    retries: Annotated[int, Field(ge=0, le=10)] = 3

    @model_validator(mode="after")
    def _manifest_layout(self) -> DatasetConfig:
        if (self.layout == "manifest") != (self.manifest is not None):
            raise ValueError("layout='manifest' and a manifest file go together")
        if self.manifest is not None and refuse_relative(self.manifest):
            raise ValueError(f"manifest {self.manifest!r}: {refuse_relative(self.manifest)}")
        return self

    def open_store(self) -> Store:
        """The store, with credentials from the environment or secret files."""
        options = dict(self.storage_options)
        for option, variable in self.storage_options_env.items():
            if variable not in os.environ:
                raise ValueError(f"storage option {option!r} needs the variable {variable}")
            options[option] = os.environ[variable]
        for option, path in self.storage_options_files.items():
            try:
                options[option] = path.read_text().strip()
            except OSError as exc:
                raise ValueError(f"storage option {option!r}: cannot read {path}: {exc}") from exc
        store = Store(self.url, options, retries=self.retries)
        if self.layout == "folders" and not store.can_list:
            raise ValueError(f"{store.url} cannot be listed: give it a manifest")
        return store


class Dataset:
    """A named store of images, listed on first use and then reused (re-listed after
    ``listing_ttl_s``, or when refreshed).

    ``on_corrupt`` says what a stream does with an image that cannot be read or decoded:
    ``error`` ends the stream with an error frame naming it, ``skip`` leaves it out of its
    batch and reports its id and the reason in that batch.
    """

    def __init__(
        self,
        name: str,
        store: Store,
        *,
        manifest: tuple[str, str, str] | None = None,
        on_corrupt: CorruptPolicy = "error",
        listing_ttl_s: float | None = None,
        cache: bool = True,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.name, self.store, self.on_corrupt, self.cache = name, store, on_corrupt, cache
        self._manifest = manifest
        self._ttl = listing_ttl_s
        self._recheck_s = recheck_s
        self._listing: Listing | None = None
        self._listed_at = 0.0
        #: The last failure to list it (when, why, transient) while it has no listing.
        self._failure: tuple[float, str, bool] | None = None
        self._all_files: tuple[int, frozenset[str]] | None = None
        #: Digests of the listing and of the files below the root, with their generation.
        self._digests: dict[str, tuple[int, str]] = {}
        #: Bumped at every re-listing: cached bytes and images of earlier ones go unused.
        self.generation = 0
        self._lock = threading.Lock()

    @classmethod
    def folder(cls, root: Path, on_corrupt: CorruptPolicy = "error") -> Dataset:
        """A local folder of class subfolders, named after the folder."""
        return cls(root.name, Store(str(root)), on_corrupt=on_corrupt)

    @classmethod
    def from_config(cls, name: str, config: DatasetConfig, on_corrupt: CorruptPolicy) -> Dataset:
        """The dataset ``config`` describes (the config's own policy before ``on_corrupt``)."""
        manifest = None
        if config.manifest is not None:
            manifest = (config.manifest, config.path_column, config.label_column)
        return cls(
            name,
            config.open_store(),
            manifest=manifest,
            on_corrupt=config.on_corrupt or on_corrupt,
            listing_ttl_s=config.listing_ttl_s,
            cache=config.cache,
        )

    @property
    def listing(self) -> Listing:
        """The dataset's files and labels."""
        with self._lock:
            stale = self._ttl is not None and time.monotonic() - self._listed_at > self._ttl
            if self._listing is None or stale:
                failure = self._failure
                if failure is not None and time.monotonic() - failure[0] < self._recheck_s:
                    _, reason, transient = failure
                    raise DatasetUnavailableError(self.name, reason, transient=transient)
                self._relist(keep_old=self._listing is not None)
            assert self._listing is not None
            return self._listing

    def empty_reason(self) -> str | None:
        """Why the dataset has no samples (None when it has some): what it holds instead,
        and the layout it should have."""
        if self.listing.files:
            return None
        if self._manifest is not None:
            return f"its manifest {self._manifest[0]!r} names no images"
        try:
            return why_empty(self.store, self.name)
        except SourceError as exc:
            return f"it cannot be listed: {exc}"

    def all_files(self) -> frozenset[str] | None:
        """Every file below the root, listed again with the dataset (None for a store that
        cannot be listed)."""
        if not self.store.can_list:
            return None
        with self._lock:
            if self._all_files is None or self._all_files[0] != self.generation:
                try:
                    found = frozenset(self.store.files_below(""))
                except SourceError as exc:
                    raise DatasetUnavailableError(
                        self.name, str(exc), transient=exc.transient
                    ) from exc
                self._all_files = (self.generation, found)
            return self._all_files[1]

    def digest(self, what: Literal["listing", "files"]) -> str:
        """A digest of the listing (files and labels, in order) or of every file below the
        root, as listed now: processes that list the dataset alike agree on it (the worker
        processes check it before they make its samples)."""
        generation = self.generation
        known = self._digests.get(what)
        if known is not None and known[0] == generation:
            return known[1]
        hasher = hashlib.sha256()
        if what == "listing":
            listing = self.listing
            generation = self.generation
            hasher.update("\n".join(listing.files).encode())
            hasher.update(listing.labels.tobytes())
        else:
            files = self.all_files()
            generation = self.generation
            hasher.update("\n".join(sorted(files or ())).encode())
        found = hasher.hexdigest()[:16]
        self._digests[what] = (generation, found)
        return found

    def refresh(self) -> Listing:
        """List the dataset again now (even within ``recheck_s`` of a failure)."""
        with self._lock:
            self._relist(keep_old=False)
            assert self._listing is not None
            return self._listing

    def _relist(self, keep_old: bool) -> None:
        try:
            if self._manifest is None:
                listing = list_class_folders(self.store)
            else:
                listing = list_manifest(self.store, *self._manifest)
        except SourceError as exc:
            log.error("cannot list dataset %s (%s): %s", self.name, self.store.url, exc)
            if keep_old:  # a store that hiccups keeps serving what it had
                return
            self._failure = (time.monotonic(), str(exc), exc.transient)
            raise DatasetUnavailableError(self.name, str(exc), transient=exc.transient) from exc
        self._listing, self._listed_at = listing, time.monotonic()
        self._failure = None
        self.generation += 1


class Catalog:
    """Name -> dataset. Built by the operator; fixed while serving."""

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
        configs: Mapping[str, DatasetConfig] | None = None,
    ) -> Catalog:
        """One dataset per folder, named after the folder, and one per entry of ``configs``;
        corrupt images handled by the config's policy, else ``policies[name]``, else
        ``on_corrupt``."""
        policies = policies or {}
        catalog = cls()
        for folder in folders:
            root = Path(folder).resolve()
            catalog.add(Dataset.folder(root, policies.get(root.name, on_corrupt)))
        for name, config in (configs or {}).items():
            try:
                dataset = Dataset.from_config(name, config, policies.get(name, on_corrupt))
            except ValueError as exc:
                raise ValueError(f"dataset {name!r}: {exc}") from exc
            catalog.add(dataset)
        return catalog

    def add(self, dataset: Dataset) -> None:
        """Register ``dataset``; names must be unique and URL-safe."""
        if not _NAME.match(dataset.name):
            raise ValueError(f"dataset name {dataset.name!r} must match {_NAME.pattern}")
        if dataset.name in self._datasets:
            raise ValueError(
                f"two datasets are named {dataset.name!r} "
                f"({self._datasets[dataset.name].store.url} and {dataset.store.url})"
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
