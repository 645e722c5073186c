"""``flow_from_dataframe``'s table handling, as Keras' ``DataFrameIterator`` does it: check
the columns, find the classes among the rows whose files are valid, encode the labels.

Every array stays aligned with the whole table (row i is row i of the dataframe), so the
file names are uploaded once: a row without a label among the classes gets class index -1
(or an empty multi-hot row), and the server leaves such rows out, after dropping the rows
whose files are missing, and before the ``subset`` split: Keras' order.

pandas is optional: a DataFrame, or any mapping of column name -> sequence, will do.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CLASSIFYING", "Rows", "check_label_types", "encode_rows", "file_names"]

Array = np.ndarray[Any, Any]

CLASSIFYING = ("categorical", "binary", "sparse")


@dataclass(frozen=True)
class Rows:
    """A table's labels, ready to upload, aligned with all of its rows."""

    #: Label arrays to upload: class indices (-1: no label) or multi-hot rows, raw values,
    #: or one array per output.
    ys: list[Array]
    weights: Array | None
    class_indices: dict[str, int]
    #: Keras' ``classes`` value of each row (a class index or a list of them; None: no label).
    classes: list[Any]


def _column(table: Any, name: str) -> list[Any]:
    try:
        values = table[name]
    except (KeyError, IndexError, TypeError):
        raise KeyError(f"the dataframe has no column {name!r}") from None
    return list(values.tolist() if hasattr(values, "tolist") else values)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def file_names(table: Any, x_col: str) -> list[str]:
    """The ``x_col`` column, checked to hold strings as Keras requires."""
    names = _column(table, x_col)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"All values in column x_col={x_col} must be strings.")
    return names


def check_label_types(table: Any, y_col: str | list[str], class_mode: str) -> None:
    """Keras' checks of the label column's values, made before anything is uploaded."""
    if class_mode not in CLASSIFYING:
        return
    if not isinstance(y_col, str):
        raise TypeError(f'class_mode="{class_mode}" needs y_col to name one column')
    for label in _column(table, y_col):
        if _missing(label):
            continue
        if class_mode != "categorical" and not isinstance(label, str):
            raise TypeError(
                f'If class_mode="{class_mode}", y_col="{y_col}" column values must be strings.'
            )
        is_list = isinstance(label, list | tuple)
        if not (isinstance(label, str) or (is_list and all(isinstance(c, str) for c in label))):
            raise TypeError(
                f'If class_mode="categorical", y_col="{y_col}" column values must be type '
                f"string, list or tuple; got {label!r}"
            )


def _wanted(label: Any, wanted: set[str]) -> Any:
    """``label`` restricted to the wanted classes; None when nothing is left."""
    if isinstance(label, list | tuple):
        inside = [c for c in label if c in wanted]
        return inside or None
    return label if label in wanted else None


def _classify(
    labels: list[Any], valid: Sequence[int], classes: Sequence[str] | None
) -> tuple[list[Any], list[str]]:
    """Per row: the label among the classes (None for no label, or an invalid row); and the
    classes: those given, in their order, or else the sorted labels of the valid rows."""
    if classes:
        names = list(dict.fromkeys(classes))
    else:
        found: set[str] = set()
        for row in valid:
            label = labels[row]
            if isinstance(label, list | tuple):
                found.update(label)
            elif not _missing(label):
                found.add(label)
        names = sorted(found)
    wanted = set(names)
    kept: list[Any] = [None] * len(labels)
    for row in valid:
        if not _missing(labels[row]):
            kept[row] = _wanted(labels[row], wanted)
    return kept, names


def encode_rows(
    table: Any,
    *,
    y_col: str | list[str],
    weight_col: str | None,
    classes: Sequence[str] | None,
    class_mode: str,
    valid: Sequence[int],
) -> Rows:
    """Keras' reading of a dataframe's labels; ``valid`` are the rows whose files exist."""
    class_indices: dict[str, int] = {}
    ys: list[Array] = []
    keras_classes: list[Any] = []
    if class_mode in CLASSIFYING:
        assert isinstance(y_col, str)  # check_label_types ran first
        labels = _column(table, y_col)
        check_label_types(table, y_col, class_mode)
        kept, names = _classify(labels, valid, classes)
        if class_mode == "binary" and len(names) != 2:
            raise ValueError(
                f'If class_mode="binary" there must be 2 classes. Found {len(names)} '
                f"classes: {names}"
            )
        class_indices = {name: i for i, name in enumerate(names)}
        dropped = sum(kept[row] is None for row in valid)
        if dropped:
            warnings.warn(
                f"{dropped} rows have no label among the classes; they are left out",
                stacklevel=3,
            )
        if any(isinstance(label, list | tuple) for label in kept):
            multi_hot = np.zeros((len(kept), len(names)), dtype=np.uint8)
            for row, label in enumerate(kept):
                if label is not None:
                    indices = [
                        class_indices[c] for c in ([label] if isinstance(label, str) else label)
                    ]
                    multi_hot[row, indices] = 1
                    keras_classes.append(indices)
                else:
                    keras_classes.append(None)
            ys = [multi_hot]
        else:
            keras_classes = [None if label is None else class_indices[label] for label in kept]
            ys = [np.asarray([-1 if c is None else c for c in keras_classes], dtype=np.int32)]
    elif class_mode == "raw":
        columns = [y_col] if isinstance(y_col, str) else list(y_col)
        values = np.asarray([_column(table, c) for c in columns]).T
        ys = [values[:, 0] if isinstance(y_col, str) else values]
    elif class_mode == "multi_output":
        if isinstance(y_col, str):
            raise TypeError('If class_mode="multi_output", y_col must be a list.')
        ys = [np.asarray(_column(table, c)) for c in y_col]
    for y in ys:
        if y.dtype.kind not in "biuf":
            raise TypeError(
                f"y_col={y_col} must hold numbers for class_mode={class_mode!r}, got {y.dtype}"
            )
    weights = None
    if weight_col is not None:
        weights = np.asarray(_column(table, weight_col))
        if weights.dtype.kind not in "iuf":
            raise TypeError(f"Column weight_col={weight_col} must be numeric.")
    return Rows(ys=ys, weights=weights, class_indices=class_indices, classes=keras_classes)
