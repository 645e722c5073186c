"""What a stream reads, sample by sample: a dataset's class folders, uploaded images
(``flow``), or files of a dataset named by uploaded rows (``flow_from_dataframe``).

``resolve.resolve_samples`` makes them once per stream request; after that a sample is a
pure function of its id, as the pipeline needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

from .batching import make_labels
from .catalog import CorruptPolicy, Dataset
from .limits import Limits
from .masks import mask_spec
from .reader import ImageReader, SampleError
from .sources import Listing

__all__ = [
    "Files",
    "FolderSamples",
    "MaskSamples",
    "PlanError",
    "RowSamples",
    "SampleError",
    "Samples",
]

Array = np.ndarray[Any, Any]


class PlanError(ValueError):
    """The spec is valid on its own but not for this dataset or server; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _label_entry(dtype: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"dtype": np.dtype(dtype).name, "shape": [None, *shape]}


class Samples(ABC):
    """The samples of one stream in sample-id order, with their labels."""

    #: What the stream reads, for headers and messages: a dataset name or "arrays".
    name: str
    class_names: tuple[str, ...]
    #: What to do with a sample that cannot be read or decoded (the dataset's policy).
    on_corrupt: CorruptPolicy = "error"

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def images(self, ids: list[int]) -> list[Array | SampleError]:
        """The samples' images at the target size (uint8, or float for float uploads),
        HxWxC, or the error of each that could not be read or decoded."""

    @abstractmethod
    def labels(self, ids: Array) -> dict[str, Array]:
        """The label arrays (``y``, ``y0``..., ``w``) of the samples ``ids``."""

    @abstractmethod
    def label_arrays(self) -> dict[str, dict[str, Any]]:
        """Dtype and shape of each array ``labels`` returns, for the stream header."""

    @abstractmethod
    def listing(self) -> dict[str, Any]:
        """Files (where there are files), labels and upload rows, in sample-id order."""

    def masks(self, ids: list[int]) -> list[Array | SampleError] | None:
        """The samples' masks (uint8 HxWx1) for ``class_mode="mask"``; None otherwise."""
        return None

    def digest(self) -> str:
        """What the samples come from beyond the spec, digested (a dataset's listing): two
        processes whose digests agree read the same sample for the same id."""
        return ""


class FolderSamples(Samples):
    """A dataset's class folders, as ``flow_from_directory`` reads them."""

    def __init__(self, dataset: Dataset, listing: Listing, spec: StreamSpec, reader: Files):
        self.name = dataset.name
        self.class_names = listing.class_names
        self.on_corrupt = dataset.on_corrupt
        self._dataset = dataset
        self._listing, self._spec, self._read = listing, spec, reader

    def digest(self) -> str:
        # The spec's classes and subset cut the listing the same way anywhere.
        return self._dataset.digest("listing")

    def __len__(self) -> int:
        return len(self._listing.files)

    def images(self, ids: list[int]) -> list[Array | SampleError]:
        return self._read([self._listing.files[i] for i in ids])

    def labels(self, ids: Array) -> dict[str, Array]:
        y = make_labels(self._spec.class_mode, self._listing.labels[ids], len(self.class_names))
        return {} if y is None else {"y": y}

    def label_arrays(self) -> dict[str, dict[str, Any]]:
        mode = self._spec.class_mode
        if mode == "categorical":
            return {"y": _label_entry(np.float32, (len(self.class_names),))}
        return {"y": _label_entry(np.float32, ())} if mode in ("binary", "sparse") else {}

    def listing(self) -> dict[str, Any]:
        return {"files": list(self._listing.files), "labels": self._listing.labels.tolist()}


class MaskSamples(Samples):
    """Images and their masks (``masks.py``), in sorted path order."""

    def __init__(
        self, dataset: Dataset, pairs: tuple[tuple[str, ...], tuple[str, ...]], read: Files
    ) -> None:
        self.name = dataset.name
        self.class_names = ()
        self.on_corrupt = dataset.on_corrupt
        self._images, self._masks = pairs
        self._read = read
        self._read_masks = Files(read.reader, dataset, mask_spec(read.spec), read.limits)
        self._dataset = dataset

    def digest(self) -> str:
        return self._dataset.digest("files")

    def __len__(self) -> int:
        return len(self._images)

    def images(self, ids: list[int]) -> list[Array | SampleError]:
        return self._read([self._images[i] for i in ids])

    def masks(self, ids: list[int]) -> list[Array | SampleError] | None:
        return self._read_masks([self._masks[i] for i in ids])

    def labels(self, ids: Array) -> dict[str, Array]:
        return {}  # the masks are the labels: the pipeline warps them with their images

    def label_arrays(self) -> dict[str, dict[str, Any]]:
        return {"y": _label_entry(np.uint8, (*self._read.spec.target_size, 1))}

    def listing(self) -> dict[str, Any]:
        return {"files": list(self._images), "labels": [], "masks": list(self._masks)}


class RowSamples(Samples):
    """Rows of uploaded arrays: images in ``x``, or files of a dataset named per row."""

    def __init__(
        self,
        spec: StreamSpec,
        rows: Array,
        ys: list[Array],
        weights: Array | None,
        *,
        x: Array | None = None,
        files: tuple[Dataset, Array, Files] | None = None,
    ) -> None:
        self.class_names = tuple(spec.classes or ())
        self.name = files[0].name if files else "arrays"
        if files:
            self.on_corrupt = files[0].on_corrupt
        self._spec, self._rows, self._ys, self._weights = spec, rows, ys, weights
        self._x, self._files = x, files

    def __len__(self) -> int:
        return len(self._rows)

    def digest(self) -> str:
        # The rows are the uploads' (named in the spec); validating the file names also
        # reads the dataset's files.
        validating = self._spec.arrays is not None and self._spec.arrays.validate_filenames
        return self._files[0].digest("files") if self._files and validating else ""

    @property
    def uint8_images(self) -> bool:
        """Whether the images are uint8 (files always are; uploaded images may be floats)."""
        return self._x is None or self._x.dtype == np.uint8

    def images(self, ids: list[int]) -> list[Array | SampleError]:
        rows = self._rows[ids]
        if self._files is not None:
            _, names, read = self._files
            return read([str(names[row]) for row in rows])
        assert self._x is not None
        images = np.array(self._x[rows])
        # OpenCV warps uint8 and floats; every other kind becomes float32, as Keras makes it.
        if images.dtype not in (np.uint8, np.float32):
            images = images.astype(np.float32)
        return list(images)

    def labels(self, ids: Array) -> dict[str, Array]:
        rows = self._rows[ids]
        mode = self._spec.class_mode
        out: dict[str, Array] = {}
        if mode in ("categorical", "binary", "sparse"):
            y = self._ys[0][rows]
            if y.ndim == 1:
                labels = make_labels(mode, y.astype(np.int64), len(self.class_names))
                assert labels is not None
                out["y"] = labels
            else:  # multi-label rows, already multi-hot
                out["y"] = y.astype(np.float32)
        elif mode == "raw":
            out["y"] = np.ascontiguousarray(self._ys[0][rows])
        elif mode == "multi_output":
            out.update({f"y{i}": np.ascontiguousarray(y[rows]) for i, y in enumerate(self._ys)})
        # Keras yields weights with every kind of label, "input" included, and none without.
        if self._weights is not None and mode != "none":
            out["w"] = np.ascontiguousarray(self._weights[rows])
        return out

    def label_arrays(self) -> dict[str, dict[str, Any]]:
        mode = self._spec.class_mode
        entries: dict[str, dict[str, Any]] = {}
        if mode in ("categorical", "binary", "sparse"):
            shape = (len(self.class_names),) if mode == "categorical" else ()
            entries["y"] = _label_entry(np.float32, shape)
        elif mode == "raw":
            entries["y"] = _label_entry(self._ys[0].dtype, self._ys[0].shape[1:])
        elif mode == "multi_output":
            for i, y in enumerate(self._ys):
                entries[f"y{i}"] = _label_entry(y.dtype, y.shape[1:])
        if self._weights is not None and mode != "none":
            entries["w"] = _label_entry(self._weights.dtype, ())
        return entries

    def listing(self) -> dict[str, Any]:
        files = [] if self._files is None else [str(self._files[1][r]) for r in self._rows]
        return {"files": files, "labels": [], "rows": self._rows.tolist()}


class Files:
    """Reads files of one dataset for one spec through the server's reader."""

    def __init__(
        self, reader: ImageReader, dataset: Dataset, spec: StreamSpec, limits: Limits
    ) -> None:
        self.reader, self.dataset, self.spec, self.limits = reader, dataset, spec, limits

    def __call__(self, relatives: list[str]) -> list[Array | SampleError]:
        return self.reader.read(self.dataset, relatives, self.spec, self.limits)
