"""Resolve a spec against what it reads: a dataset's listing (its ``classes`` and
``subset``), its image + mask pairs, or uploaded arrays checked row by row.

Happens once per stream request; the ``Samples`` it returns then make any sample by id.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np

from augstream_protocol.spec import StreamSpec

from .catalog import Catalog, Dataset
from .limits import Limits
from .masks import MaskError, resolve_pairs
from .reader import ImageReader
from .samples import Files, FolderSamples, MaskSamples, PlanError, RowSamples, Samples
from .sources import IMAGE_EXTENSIONS, Listing, refuse_relative
from .uploads import UploadStore

__all__ = ["resolve_listing", "resolve_samples"]

Array = np.ndarray[Any, Any]


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
        why = "" if spec.subset or spec.classes else f": {dataset.empty_reason()}"
        raise PlanError("dataset", f"{what}dataset {dataset.name!r} has no images{why}")
    return listing


def resolve_samples(
    spec: StreamSpec, catalog: Catalog, store: UploadStore, limits: Limits, reader: ImageReader
) -> Samples:
    """What ``spec`` reads, checked against the catalog and the uploaded arrays."""
    arrays = spec.arrays
    if arrays is None:
        assert spec.dataset is not None  # the spec's own validation guarantees it
        dataset = catalog.get(spec.dataset)
        read = Files(reader, dataset, spec, limits)
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
    files: tuple[Dataset, Array, Files] | None = None
    if arrays.x is not None:
        _check_images(spec, source)
    else:
        assert spec.dataset is not None
        dataset = catalog.get(spec.dataset)
        rows = _check_filenames(dataset, source, validate=arrays.validate_filenames)
        files = (dataset, source, Files(reader, dataset, spec, limits))
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
