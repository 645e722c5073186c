"""The three flows of ``ImageDataGenerator``: ``flow_from_directory``, ``flow`` and
``flow_from_dataframe``, with Keras' legacy signatures.

Each turns its arguments into a ``StreamSpec`` (uploading arrays or table rows once) and
hands it to the generator's ``_iterator``; the generator itself (``generator.py``) holds the
augmentation and standardisation settings, ``fit``, and the client.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from augstream_protocol.fields import Shard
from augstream_protocol.spec import StreamSpec

from ._dataframe import check_label_types, encode_rows, file_names
from ._distribution import front_shard
from ._exceptions import InvalidSpecError

if TYPE_CHECKING:
    from .client import Client
    from .keras import RemoteIterator

__all__ = ["COLOR_MODES", "Flows"]

#: Channels of an image array -> the ``color_mode`` that streams it.
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def _sharded(given: Any) -> dict[str, Any]:
    """The spec's ``shard`` field for a flow (none when the flow reads whole epochs)."""
    shard = front_shard(given)
    return {} if shard is None else {"shard": shard}


class Flows:
    """The ``flow*`` methods; ``ImageDataGenerator`` provides the hooks below."""

    _augmentation: dict[str, Any]

    def _client(self) -> Client:
        raise NotImplementedError

    def _spec_fields(self, **fields: Any) -> StreamSpec:
        raise NotImplementedError

    def _iterator(self, client: Client, spec: StreamSpec) -> RemoteIterator:
        raise NotImplementedError

    def _channels_first(self) -> bool:
        raise NotImplementedError

    def flow_from_directory(
        self,
        directory: str,
        target_size: tuple[int, int] = (256, 256),
        color_mode: str = "rgb",
        classes: list[str] | None = None,
        class_mode: str | None = "categorical",
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        save_to_dir: str | None = None,
        save_prefix: str = "",
        save_format: str = "png",
        follow_links: bool = False,
        subset: str | None = None,
        interpolation: str = "nearest",
        keep_aspect_ratio: bool = False,
        *,
        shard: tuple[int, int] | Shard | None = None,
    ) -> RemoteIterator:
        """Batches from the server's dataset ``directory``, as Keras' method of that name.

        ``directory`` is a dataset name (``augstream serve /data/cats`` offers ``cats``).
        ``shard=(index, count)``: this trainer is worker ``index`` of ``count`` data-parallel
        workers and reads its own part of every epoch, as many batches as every other
        worker (``Shard.equal``); unset, it is read from the framework's environment
        (``TF_CONFIG``, Keras' or JAX's distribution) when there is one, else the whole
        epoch. The same goes for ``flow`` and ``flow_from_dataframe``.
        """
        if save_to_dir is not None:
            raise ValueError("save_to_dir is not supported: the images live on the server")
        if follow_links:
            raise ValueError("follow_links=True is not supported: the server decides on links")
        del save_prefix, save_format
        if "/" in directory or os.sep in directory:
            raise ValueError(
                f"directory names a dataset on the server, not a path; got {directory!r}"
            )
        spec = self._spec_fields(
            dataset=directory,
            target_size=tuple(target_size),
            color_mode=color_mode,
            classes=classes,
            class_mode="none" if class_mode is None else class_mode,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            subset=subset,
            interpolation=interpolation,
            keep_aspect_ratio=keep_aspect_ratio,
            **_sharded(shard),
        )
        return self._iterator(self._client(), spec)

    def flow(
        self,
        x: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        sample_weight: Any = None,
        seed: int | None = None,
        save_to_dir: str | None = None,
        save_prefix: str = "",
        save_format: str = "png",
        ignore_class_split: bool = False,
        subset: str | None = None,
        *,
        shard: tuple[int, int] | Shard | None = None,
    ) -> RemoteIterator:
        """Batches of in-memory images ``x`` (rank 4) with labels ``y``, as Keras' ``flow``.

        The arrays are uploaded once (the server keeps them under their SHA-256, so a second
        call with the same arrays sends nothing) and streamed like any dataset; ``y`` and
        ``sample_weight`` come back unchanged, row for row.
        """
        if save_to_dir is not None:
            raise ValueError("save_to_dir is not supported: augmentation runs on the server")
        del save_prefix, save_format
        if isinstance(x, tuple | list):
            raise ValueError(
                "x as (images, other inputs) is not supported: stream the images, and pair "
                "them with the other inputs through the batch's sample ids"
            )
        images = np.asarray(x)
        if images.ndim != 4:
            raise ValueError(
                f"Input data in `flow` should have rank 4 (a batch of images); got an array "
                f"of shape {images.shape}"
            )
        if self._channels_first():
            images = images.transpose(0, 2, 3, 1)
        if images.shape[3] not in COLOR_MODES:
            raise ValueError(
                f"images must have 1, 3 or 4 channels, got {images.shape[3]} (shape {images.shape})"
            )
        labels = None if y is None else np.asarray(y)
        weights = None if sample_weight is None else np.asarray(sample_weight)
        for name, values in (("y", labels), ("sample_weight", weights)):
            if values is not None and len(values) != len(images):
                raise ValueError(
                    f"`x` (images tensor) and `{name}` should have the same length. Found: "
                    f"x.shape = {images.shape}, {name}.shape = {values.shape}"
                )
        if subset is not None and labels is not None and not ignore_class_split:
            cut = int(len(images) * self._augmentation["validation_split"])
            if not np.array_equal(np.unique(labels[:cut]), np.unique(labels[cut:])):
                raise ValueError(
                    "Training and validation subsets have different number of classes after "
                    "the split. If your numpy arrays are sorted by the label, you might want "
                    "to shuffle them (or pass ignore_class_split=True)."
                )
        client = self._client()
        arrays: dict[str, Any] = {"x": client.upload(images)}
        if labels is not None:
            arrays["y"] = [client.upload(labels)]
            if weights is not None:
                arrays["sample_weight"] = client.upload(weights)
        spec = self._spec_fields(
            arrays=arrays,
            target_size=images.shape[1:3],
            color_mode=COLOR_MODES[images.shape[3]],
            class_mode="none" if labels is None else "raw",
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            subset=subset,
            **_sharded(shard),
        )
        return self._iterator(client, spec)

    def flow_from_dataframe(
        self,
        dataframe: Any,
        directory: str | None = None,
        x_col: str = "filename",
        y_col: str | list[str] = "class",
        weight_col: str | None = None,
        target_size: tuple[int, int] = (256, 256),
        color_mode: str = "rgb",
        classes: list[str] | None = None,
        class_mode: str | None = "categorical",
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        save_to_dir: str | None = None,
        save_prefix: str = "",
        save_format: str = "png",
        subset: str | None = None,
        interpolation: str = "nearest",
        validate_filenames: bool = True,
        *,
        shard: tuple[int, int] | Shard | None = None,
        **kwargs: Any,
    ) -> RemoteIterator:
        """Batches of the files a table names, as Keras' method of that name.

        ``dataframe`` is a pandas DataFrame (or any mapping of column -> values); ``x_col``
        names files inside the server dataset ``directory``. The rows are uploaded once and
        the server reads, decodes and augments the files. ``class_mode`` may also be
        ``"raw"`` (the ``y_col`` values) or ``"multi_output"`` (one array per ``y_col``).
        """
        if save_to_dir is not None:
            raise ValueError("save_to_dir is not supported: the images live on the server")
        del save_prefix, save_format
        for old in ("has_ext", "sort", "drop_duplicates"):
            if kwargs.pop(old, None) is not None:
                warnings.warn(f"{old} is deprecated and ignored, as in Keras", stacklevel=2)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        if class_mode == "other":
            warnings.warn('class_mode="other" is deprecated: use "raw"', stacklevel=2)
            class_mode = "raw"
        if directory is None or "/" in directory or os.sep in directory:
            raise ValueError(
                "directory must name a dataset on the server (file names in x_col are "
                f"relative to it); got {directory!r}"
            )
        mode = "none" if class_mode is None else class_mode
        names = file_names(dataframe, x_col)
        check_label_types(dataframe, y_col, mode)
        client = self._client()
        files = client.upload(np.asarray(names, dtype=str))
        valid: Sequence[int] = range(len(names))
        if validate_filenames:
            # Keras finds the classes among the rows whose files are valid; only the server
            # can tell which those are.
            try:
                listing = client.files(
                    dataset=directory,
                    arrays={"filenames": files, "validate_filenames": True},
                    class_mode="none",
                )
            except InvalidSpecError as exc:
                raise ValueError(
                    f"none of the {len(names)} files named in x_col={x_col!r} is an image of "
                    f"dataset {directory!r} ({exc})"
                ) from exc
            valid = listing.rows or []
        if validate_filenames and len(valid) < len(names):
            warnings.warn(
                f'Found {len(names) - len(valid)} invalid image filename(s) in x_col="{x_col}". '
                "These filename(s) will be ignored.",
                stacklevel=2,
            )
        rows = encode_rows(
            dataframe,
            y_col=y_col,
            weight_col=weight_col,
            classes=classes,
            class_mode=mode,
            valid=valid,
        )
        arrays: dict[str, Any] = {
            "filenames": files,
            "validate_filenames": validate_filenames,
            "y": [client.upload(y) for y in rows.ys],
        }
        if rows.weights is not None and mode != "none":
            arrays["sample_weight"] = client.upload(rows.weights)
        spec = self._spec_fields(
            dataset=directory,
            arrays=arrays,
            target_size=tuple(target_size),
            color_mode=color_mode,
            classes=list(rows.class_indices) or None,
            class_mode=mode,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            subset=subset,
            interpolation=interpolation,
            **_sharded(shard),
        )
        iterator = self._iterator(client, spec)
        kept = iterator.rows or []
        iterator.filenames = [names[r] for r in kept]
        iterator.filepaths = [f"{directory}/{name}" for name in iterator.filenames]
        iterator.classes = [rows.classes[r] for r in kept] if rows.classes else None
        targets = [y[kept] for y in rows.ys]
        iterator.labels = {"raw": targets[0] if targets else None, "multi_output": targets}.get(
            mode, iterator.classes
        )
        return iterator
