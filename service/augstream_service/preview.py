"""Preview: augmented samples laid out as one PNG grid, with their labels, for a person.

Pure functions of a produced batch; the route makes the batch exactly as a stream would, so
what the grid shows is what a trainer with the same spec and seed receives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from augstream_protocol.fields import field_value
from augstream_protocol.spec import StreamSpec

from .samples import PlanError

__all__ = [
    "GRID_PARAMETERS",
    "MAX_TILES",
    "grid_bytes",
    "label_texts",
    "preview_fields",
    "render_grid",
]

Array = np.ndarray[Any, Any]

#: Query parameters of a preview that shape the grid rather than the stream.
GRID_PARAMETERS = frozenset({"spec", "rows", "cols", "epoch", "tile"})
#: Samples in one grid at most (rows x cols): a preview is a look, not a download.
MAX_TILES = 64
#: Tiles larger than this many pixels (height or width) are shrunk to it.
MAX_TILE = 384
_GAP = 4
_CAPTION = 18
_BACKGROUND = (40, 40, 40)
_TEXT = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4


def label_texts(
    class_mode: str, class_names: Sequence[str], arrays: Mapping[str, Array], count: int
) -> list[str]:
    """A short caption per sample: its class name(s), or its target values."""
    name = "y" if "y" in arrays else next((n for n in arrays if n.startswith("y")), None)
    if name is None:
        return [""] * count
    y = arrays[name]
    if class_names and class_mode == "categorical":
        return [" ".join(class_names[int(i)] for i in np.flatnonzero(row)) for row in y]
    if class_names and class_mode in ("binary", "sparse"):
        return [class_names[int(v)] for v in y]
    return [_values(row) for row in y]


def _values(row: Array) -> str:
    flat = np.asarray(row).reshape(-1)
    shown = " ".join(f"{v:.3g}" for v in flat[:3].tolist())
    return shown + (" ..." if flat.size > 3 else "")


def grid_bytes(rows: int, cols: int) -> int:
    """The most bytes a grid of ``rows`` x ``cols`` tiles can take (every tile at its
    largest), as ``render_grid`` lays it out."""
    height = rows * (MAX_TILE + _CAPTION + _GAP) + _GAP
    return height * (cols * (MAX_TILE + _GAP) + _GAP) * 3


def render_grid(x: Array, captions: Sequence[str], cols: int, tile: int) -> bytes:
    """``x`` (N, H, W, C; uint8, or float stretched per image) as PNG bytes, ``cols`` wide.

    Images smaller than ``tile`` pixels are enlarged by a whole factor (nearest neighbour,
    so pixels stay visible); larger than ``MAX_TILE`` are shrunk.
    """
    count, height, width = x.shape[0], x.shape[1], x.shape[2]
    scale = max(1, tile // max(height, width))
    shrink = min(1.0, MAX_TILE / (max(height, width) * scale))
    cell_h = max(1, round(height * scale * shrink))
    cell_w = max(1, round(width * scale * shrink))
    cols = max(1, min(cols, count))
    rows = max(1, math.ceil(count / cols))
    grid = np.empty(
        (rows * (cell_h + _CAPTION + _GAP) + _GAP, cols * (cell_w + _GAP) + _GAP, 3), np.uint8
    )
    grid[:] = _BACKGROUND
    for index in range(count):
        top = _GAP + (index // cols) * (cell_h + _CAPTION + _GAP)
        left = _GAP + (index % cols) * (cell_w + _GAP)
        grid[top : top + cell_h, left : left + cell_w] = _cell(x[index], cell_h, cell_w)
        _caption(grid, captions[index] if index < len(captions) else "", top + cell_h, left, cell_w)
    ok, png = cv2.imencode(".png", grid)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("OpenCV could not encode the preview")
    return png.tobytes()


def _cell(image: Array, height: int, width: int) -> Array:
    """One sample as a BGR uint8 tile of the given size."""
    if image.dtype != np.uint8:
        low, high = float(np.min(image)), float(np.max(image))
        span = high - low if high > low else 1.0
        image = np.clip((image - low) * (255.0 / span), 0, 255).astype(np.uint8)
    channels = image.shape[2]
    if channels == 1:
        bgr = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    else:  # rgb, or rgba shown without its alpha
        bgr = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2BGR)
    smaller = height < bgr.shape[0]
    return cv2.resize(
        bgr, (width, height), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_NEAREST
    )


def _caption(grid: Array, text: str, top: int, left: int, width: int) -> None:
    """Write ``text`` under a tile, cut to the tile's width."""
    if not text:
        return
    # Hershey fonts draw ASCII only; "~" marks a caption cut short.
    fitted = text.encode("ascii", "replace").decode()
    while len(fitted) > 1 and cv2.getTextSize(fitted, _FONT, _FONT_SCALE, 1)[0][0] > width - 2:
        fitted = fitted[:-2] + "~"
    cv2.putText(grid, fitted, (left + 1, top + _CAPTION - 5), _FONT, _FONT_SCALE, _TEXT, 1)


def preview_fields(
    spec_json: str, query: Mapping[str, str], *, rows: int, cols: int, epoch: int
) -> dict[str, Any]:
    """The spec of a preview: ``spec_json`` (a JSON object), then any spec field given as its
    own query parameter (a JSON value, or a plain string), then the grid's batch.

    Without a seed the preview uses seed 0: the same URL always shows the same grid.
    """
    if rows * cols > MAX_TILES:
        raise PlanError("rows", f"rows x cols: a preview shows at most {MAX_TILES} samples")
    try:
        fields = json.loads(spec_json)
    except ValueError as exc:
        raise PlanError("spec", f"not JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise PlanError("spec", "must be a JSON object of stream spec fields")
    for name, raw in query.items():
        if name in GRID_PARAMETERS:
            continue
        if name not in StreamSpec.model_fields:
            raise PlanError(name, "not a stream spec field")
        fields[name] = raw if name == "dataset" else field_value(raw)
    fields.setdefault("seed", 0)
    return {**fields, "batch_size": rows * cols, "start": {"epoch": epoch, "batch": 0}}
