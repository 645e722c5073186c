"""What a server says about its datasets and about a stream it starts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .spec import StreamSpec

__all__ = ["DatasetInfo", "FileListing", "ServerInfo", "StreamHeader"]


class DatasetInfo(BaseModel):
    """A dataset a server offers."""

    model_config = ConfigDict(frozen=True)

    name: str
    samples: int
    class_indices: dict[str, int]
    class_counts: dict[str, int] = {}
    #: For a dataset laid out for segmentation (``images/`` + ``masks/``, streamed with
    #: ``class_mode="mask"``): its image + mask pairs (its "classes" are then the two
    #: folders). None for any other dataset.
    mask_pairs: int | None = None


class FileListing(BaseModel):
    """The files a spec streams from, in sample-id order, with their labels."""

    model_config = ConfigDict(frozen=True)

    class_indices: dict[str, int]
    files: list[str]
    labels: list[int]
    #: For streams over uploaded arrays: the upload row behind each sample id (after
    #: ``validate_filenames`` and the subset split).
    rows: list[int] | None = None
    #: For ``class_mode="mask"``: each image's mask file.
    masks: list[str] | None = None


class ServerInfo(BaseModel):
    """A server's version, protocol and limits (``GET /v1/server``)."""

    model_config = ConfigDict(frozen=True)

    version: str
    protocol: int
    limits: dict[str, int | None]
    active_streams: int = 0
    #: Corrupt samples left out under a dataset's ``skip`` policy since the server started.
    skipped_samples: dict[str, int] = {}


class StreamHeader(BaseModel):
    """The first frame of a stream: the resolved spec and what the batches will hold."""

    model_config = ConfigDict(frozen=True)

    protocol: int
    spec: StreamSpec
    dataset: str
    dataset_samples: int
    samples: int
    batches_per_epoch: int
    class_indices: dict[str, int]
    arrays: dict[str, Any]
