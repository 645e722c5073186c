"""What a stream reads, sample by sample: a dataset's class folders, uploaded images
(``flow``), or files of a dataset named by uploaded rows (``flow_from_dataframe``).

Resolution happens once per stream request; after that a sample is a pure function of its
id, as the pipeline needs.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from augstream.spec import StreamSpec

from .batching import make_labels
from .catalog import Catalog, CorruptPolicy, Dataset
from .limits import Limits
from .masks import MaskError, mask_spec, resolve_pairs
from .reader import ImageReader, SampleError
from .sources import IMAGE_EXTENSIONS, Listing, refuse_relative
from .uploads import UploadStore

__all__ = [
    "FolderSamples",
    "MaskSamples",
    "PlanError",
    "RowSamples",
    "SampleError",
    "Samples",
    "resolve_listing",
    "resolve_samples",
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


class FolderSamples(Samples):
    """A dataset's class folders, as ``flow_from_directory`` reads them."""

    def __init__(self, dataset: Dataset, listing: Listing, spec: StreamSpec, reader: _Files):
        self.name = dataset.name
        self.class_names = listing.class_names
        self.on_corrupt = dataset.on_corrupt
        self._listing, self._spec, self._read = listing, spec, reader

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
        self, dataset: Dataset, pairs: tuple[tuple[str, ...], tuple[str, ...]], read: _Files
    ) -> None:
        self.name = dataset.name
        self.class_names = ()
        self.on_corrupt = dataset.on_corrupt
        self._images, self._masks = pairs
        self._read = read
        self._read_masks = _Files(read.reader, dataset, mask_spec(read.spec), read.limits)

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
        files: tuple[Dataset, Array, _Files] | None = None,
    ) -> None:
        self.class_names = tuple(spec.classes or ())
        self.name = files[0].name if files else "arrays"
        if files:
            self.on_corrupt = files[0].on_corrupt
        self._spec, self._rows, self._ys, self._weights = spec, rows, ys, weights
        self._x, self._files = x, files

    def __len__(self) -> int:
        return len(self._rows)

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


def resolve_listing(spec: StreamSpec, dataset: Dataset) -> Listing:
    """The files a spec streams from: the dataset, its ``classes`` and its ``subset``."""
    listing = dataset.listing
    if spec.classes is not None:
        try:
            listing = listing.select(spec.classes)
        except KeyError as exc:
            raise PlanError("classes", str(exc.args[0])) from exc
    if spec.subset is not None:
        listing = listing.split(spec.validation_split, spec.subset)
    if not listing.files:
        what = f"the {spec.subset} subset of " if spec.subset else ""
        raise PlanError("dataset", f"{what}dataset {dataset.name!r} has no images")
    return listing


class _Files:
    """Reads files of one dataset for one spec through the server's reader."""

    def __init__(
        self, reader: ImageReader, dataset: Dataset, spec: StreamSpec, limits: Limits
    ) -> None:
        self.reader, self.dataset, self.spec, self.limits = reader, dataset, spec, limits

    def __call__(self, relatives: list[str]) -> list[Array | SampleError]:
        return self.reader.read(self.dataset, relatives, self.spec, self.limits)


def resolve_samples(
    spec: StreamSpec, catalog: Catalog, store: UploadStore, limits: Limits, reader: ImageReader
) -> Samples:
    """What ``spec`` reads, checked against the catalog and the uploaded arrays."""
    arrays = spec.arrays
    if arrays is None:
        assert spec.dataset is not None  # the spec's own validation guarantees it
        dataset = catalog.get(spec.dataset)
        read = _Files(reader, dataset, spec, limits)
        if spec.class_mode == "mask":
            try:
                return MaskSamples(dataset, resolve_pairs(spec, dataset), read)
            except MaskError as exc:
                raise PlanError("dataset", str(exc)) from exc
        return FolderSamples(dataset, resolve_listing(spec, dataset), spec, read)
    source = store.load(arrays.x or arrays.filenames or "")
    if source.ndim == 0:
        raise PlanError("arrays", "expected an array of rows, got a scalar")
    count = len(source)
    ys = [_rows_of(store.load(d), count, f"arrays.y[{i}]") for i, d in enumerate(arrays.y)]
    weights = None
    if arrays.sample_weight is not None:
        weights = _rows_of(store.load(arrays.sample_weight), count, "arrays.sample_weight")
        if weights.ndim != 1:
            raise PlanError(
                "arrays.sample_weight", f"expected one weight per row, got shape {weights.shape}"
            )
    _check_labels(spec, ys)
    rows = np.arange(count, dtype=np.int64)
    files: tuple[Dataset, Array, _Files] | None = None
    if arrays.x is not None:
        _check_images(spec, source)
    else:
        assert spec.dataset is not None
        dataset = catalog.get(spec.dataset)
        rows = _check_filenames(dataset, source, validate=arrays.validate_filenames)
        files = (dataset, source, _Files(reader, dataset, spec, limits))
    if spec.class_mode in ("categorical", "binary", "sparse"):
        # A row without a label among the classes (index -1, or an empty multi-hot row) is
        # left out, as Keras drops the rows whose labels are not in ``classes``.
        labelled = ys[0][rows] >= 0 if ys[0].ndim == 1 else ys[0][rows].any(axis=1)
        rows = rows[labelled]
    if spec.subset is not None:
        # Keras splits rows (not classes): the first fraction is the validation subset.
        cut = int(spec.validation_split * len(rows))
        rows = rows[:cut] if spec.subset == "validation" else rows[cut:]
    if not len(rows):
        what = f"the {spec.subset} subset of " if spec.subset else ""
        raise PlanError("arrays", f"{what}the uploaded rows hold no samples")
    return RowSamples(spec, rows, ys, weights, x=source if files is None else None, files=files)


def _rows_of(array: Array, count: int, field: str) -> Array:
    if array.ndim == 0 or len(array) != count:
        rows = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
        raise PlanError(field, f"has {rows}; the images have {count}")
    if array.dtype.kind == "U":
        raise PlanError(field, "labels and weights must be numbers, got text")
    return array


def _check_labels(spec: StreamSpec, ys: list[Array]) -> None:
    mode = spec.class_mode
    if mode not in ("categorical", "binary", "sparse"):
        return
    classes = len(spec.classes or ())
    y = ys[0]
    if y.ndim == 2 and mode == "categorical":
        if y.shape[1] != classes:
            raise PlanError(
                "arrays.y", f"multi-hot labels have {y.shape[1]} columns for {classes} classes"
            )
        return
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise PlanError(
            "arrays.y",
            f"class_mode={mode!r} needs one integer class index per "
            f"row, got {y.dtype} of shape {y.shape}",
        )
    if len(y) and (int(y.min()) < -1 or int(y.max()) >= classes):
        raise PlanError(
            "arrays.y",
            f"class indices must lie in [0, {classes}) (or be -1: no label), got "
            f"[{int(y.min())}, {int(y.max())}]",
        )


def _check_images(spec: StreamSpec, x: Array) -> None:
    if x.ndim != 4 or x.dtype.kind not in "iuf":
        raise PlanError(
            "arrays.x",
            f"expected images as N x H x W x C numbers, got {x.dtype} of shape {x.shape}",
        )
    if tuple(x.shape[1:3]) != spec.target_size:
        raise PlanError(
            "target_size",
            f"uploaded images are streamed at their own size "
            f"{tuple(x.shape[1:3])}, got target_size={spec.target_size}",
        )
    if x.shape[3] != spec.channels:
        raise PlanError(
            "color_mode",
            f"uploaded images have {x.shape[3]} channels; "
            f"color_mode={spec.color_mode!r} means {spec.channels}",
        )
    if x.dtype != np.uint8 and spec.jpeg_quality_range is not None:
        raise PlanError(
            "jpeg_quality_range",
            f"JPEG re-encoding needs 8-bit images; the uploaded images are {x.dtype}",
        )
    if x.dtype != np.uint8 and spec.output_dtype == "uint8":
        raise PlanError(
            "dtype",
            f"uploaded images are {x.dtype}; dtype='uint8' cannot carry them: use dtype='float32'",
        )


def _check_filenames(dataset: Dataset, names: Array, *, validate: bool) -> Array:
    """Row numbers to keep: every row, or (``validate``) those naming an image file."""
    if names.ndim != 1 or names.dtype.kind != "U":
        raise PlanError(
            "arrays.filenames",
            f"expected one file name per row as text, got {names.dtype} of shape {names.shape}",
        )
    listed: frozenset[str] | None = None
    if validate:
        # The dataset's cached list of files answers most names at once.
        listed = dataset.all_files()
    keep: list[int] = []
    unknown: list[int] = []
    for row, name in enumerate(names.tolist()):
        problem = refuse_relative(name)
        if problem is not None:
            raise PlanError("arrays.filenames", f"row {row}: {problem}")
        if not validate:
            keep.append(row)
        elif posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        elif listed is not None and name in listed:
            keep.append(row)
        else:  # not listed (yet): the store has the last word
            unknown.append(row)
    if unknown:
        present = dataset.store.exist([str(names[row]) for row in unknown])
        keep = sorted(keep + [row for row, ok in zip(unknown, present, strict=True) if ok])
    return np.asarray(keep, dtype=np.int64)
