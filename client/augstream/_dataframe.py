"""``flow_from_dataframe``'s table handling, as Keras' ``DataFrameIterator`` does it: pick
the columns, drop the rows whose labels are not wanted, encode the labels.

pandas is optional: a DataFrame, or any mapping of column name -> sequence, will do.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Rows", "encode_rows"]

Array = np.ndarray[Any, Any]

_CLASSIFYING = ("categorical", "binary", "sparse")


@dataclass(frozen=True)
class Rows:
    """The kept rows of a table, ready to upload."""

    filenames: list[str]
    #: Label arrays to upload: class indices (or multi-hot rows), raw values, or one per output.
    ys: list[Array]
    weights: Array | None
    class_indices: dict[str, int]
    #: Keras' ``classes`` attribute: a class index (or a list of them) per kept row.
    classes: list[Any]


def _column(table: Any, name: str) -> list[Any]:
    try:
        values = table[name]
    except (KeyError, IndexError, TypeError):
        raise KeyError(f"the dataframe has no column {name!r}") from None
    return list(values.tolist() if hasattr(values, "tolist") else values)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _keep_classes(
    labels: list[Any], classes: Sequence[str] | None, class_mode: str, y_col: str
) -> tuple[list[Any], list[str]]:
    """Labels restricted to ``classes`` (None where nothing is left), and the sorted classes."""
    for label in labels:
        is_list = isinstance(label, list | tuple)
        if _missing(label):
            continue
        if class_mode != "categorical" and not isinstance(label, str):
            raise TypeError(
                f'If class_mode="{class_mode}", y_col="{y_col}" column values must be strings.'
            )
        if not (isinstance(label, str) or (is_list and all(isinstance(c, str) for c in label))):
            raise TypeError(
                f'If class_mode="categorical", y_col="{y_col}" column values must be type '
                f"string, list or tuple; got {label!r}"
            )
    if classes:
        wanted = list(dict.fromkeys(classes))
        kept: list[Any] = []
        for label in labels:
            if isinstance(label, list | tuple):
                inside = [c for c in label if c in wanted]
                kept.append(inside or None)
            else:
                kept.append(label if label in wanted else None)
        return kept, sorted(wanted)  # Keras sorts given classes here too
    found: set[str] = set()
    for label in labels:
        if isinstance(label, list | tuple):
            found.update(label)
        elif not _missing(label):
            found.add(label)
    return labels, sorted(found)


def encode_rows(
    table: Any,
    *,
    x_col: str,
    y_col: str | list[str],
    weight_col: str | None,
    classes: Sequence[str] | None,
    class_mode: str,
) -> Rows:
    """Keras' reading of a dataframe for ``flow_from_dataframe``."""
    filenames = _column(table, x_col)
    if not all(isinstance(name, str) for name in filenames):
        raise TypeError(f"All values in column x_col={x_col} must be strings.")
    keep = list(range(len(filenames)))
    class_indices: dict[str, int] = {}
    ys: list[Array] = []
    keras_classes: list[Any] = []
    if class_mode in _CLASSIFYING:
        if not isinstance(y_col, str):
            raise TypeError(f'class_mode="{class_mode}" needs y_col to name one column')
        labels, names = _keep_classes(_column(table, y_col), classes, class_mode, y_col)
        if class_mode == "binary" and len(names) != 2:
            raise ValueError(
                f'If class_mode="binary" there must be 2 classes. Found {len(names)} '
                f"classes: {names}"
            )
        class_indices = {name: i for i, name in enumerate(names)}
        keep = [i for i in keep if not _missing(labels[i])]
        kept = [labels[i] for i in keep]
        if any(isinstance(label, list | tuple) for label in kept):
            multi_hot = np.zeros((len(kept), len(names)), dtype=np.uint8)
            for row, label in enumerate(kept):
                indices = [class_indices[c] for c in ([label] if isinstance(label, str) else label)]
                multi_hot[row, indices] = 1
                keras_classes.append(indices)
            ys = [multi_hot]
        else:
            keras_classes = [class_indices[label] for label in kept]
            ys = [np.asarray(keras_classes, dtype=np.int32)]
    elif class_mode == "raw":
        columns = [y_col] if isinstance(y_col, str) else list(y_col)
        values = np.asarray([_column(table, c) for c in columns]).T
        ys = [values[:, 0] if isinstance(y_col, str) else values]
    elif class_mode == "multi_output":
        if isinstance(y_col, str):
            raise TypeError('If class_mode="multi_output", y_col must be a list.')
        ys = [np.asarray(_column(table, c)) for c in y_col]
    weights = None
    if weight_col is not None:
        weights = np.asarray(_column(table, weight_col))
        if weights.dtype.kind not in "iuf":
            raise TypeError(f"Column weight_col={weight_col} must be numeric.")
        weights = weights[keep]
    if class_mode not in _CLASSIFYING:
        ys = [y[keep] for y in ys]
    for y in ys:
        if y.dtype.kind not in "biuf":
            raise TypeError(
                f"y_col={y_col} must hold numbers for class_mode={class_mode!r}, got {y.dtype}"
            )
    if len(keep) < len(filenames):
        warnings.warn(
            f"{len(filenames) - len(keep)} rows have no label among the classes; they are left out",
            stacklevel=3,
        )
    return Rows(
        filenames=[filenames[i] for i in keep],
        ys=ys,
        weights=weights,
        class_indices=class_indices,
        classes=keras_classes,
    )
