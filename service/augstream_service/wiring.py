"""The parts every process of a server builds from its settings alike: the server process
(``app.create_app``), its worker processes (``workers.run``) and the command line's checks.
One place, so that a limit or a catalog option added to the settings reaches all of them."""

from __future__ import annotations

import dataclasses

from .catalog import Catalog
from .limits import Limits
from .settings import Settings
from .uploads import UploadStore

__all__ = ["catalog_from", "limits_from", "uploads_from"]


def catalog_from(settings: Settings) -> Catalog:
    """The datasets the settings name (folders and ``[catalog.NAME]`` tables)."""
    return Catalog.from_folders(
        settings.datasets, settings.on_corrupt, settings.on_corrupt_by_dataset, settings.catalog
    )


def limits_from(settings: Settings) -> Limits:
    """The per-request limits: each ``Limits`` field is the setting of the same name."""
    return Limits(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(Limits)})


def uploads_from(settings: Settings) -> UploadStore:
    """The folder of uploaded arrays and its bounds."""
    return UploadStore(
        settings.upload_dir,
        max_upload_bytes=settings.max_upload_bytes,
        max_total_bytes=settings.upload_store_bytes,
    )
