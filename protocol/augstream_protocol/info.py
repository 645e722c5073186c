"""What a server says about its datasets and about a stream it starts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .spec import StreamSpec

__all__ = ["DatasetInfo", "FileListing", "InputWait", "ServerInfo", "StreamHeader"]


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
    #: Why the dataset has no samples (what it holds instead, the layout it needs); None
    #: when it has some.
    note: str | None = None


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
    #: The server's numerics fingerprint: a digest per family of operations
    #: (``augstream_protocol.numerics``) and ``digest`` over them all.
    numerics: dict[str, str] = {}
    #: The libraries and CPU code paths behind those digests (for people).
    libraries: dict[str, Any] = {}
    #: Where the server serves the client of its own version, for ``pip install URL``
    #: (``/client/augstream-<version>-py3-none-any.whl``); None from servers before it.
    client_wheel: str | None = None
    #: The ports of the server processes on this server's box, its own among them
    #: (``augstream serve --servers``): a client spreads each stream over all of them.
    sibling_ports: list[int] = []


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
    #: The server's digests of the numerics families this stream's bytes depend on;
    #: replicas whose digests differ are never mixed in one stream.
    numerics: dict[str, str] = {}
    #: The ports of the server processes on the serving box (``augstream serve
    #: --servers``), its own among them: the client spreads the stream over them too.
    sibling_ports: list[int] = []


class InputWait(BaseModel):
    """How long a trainer waited for the batches of a dataset since it last said
    (``POST /v1/report``; a stream request says it in its ``Augstream-Input-Wait`` header):
    the signal autoscaling follows (``augstream_input_wait_seconds_total``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The dataset streamed (its name), or "arrays" for uploaded images.
    dataset: str = Field(min_length=1, max_length=200)
    waited_s: float = Field(ge=0, le=86400)
    batches: int = Field(ge=0, le=10_000_000)
