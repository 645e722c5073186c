"""The work every contender does (the issue's definition, shared so no one differs)."""

from __future__ import annotations

from typing import Any

__all__ = ["BATCH", "ROTATION", "SHIFT", "SIZE", "SPEC", "ZOOM"]

SIZE, BATCH, ROTATION, SHIFT, ZOOM = 224, 32, 20.0, 0.1, 0.1

#: augstream's spelling of the same work (interpolation "nearest", as flow_from_directory).
SPEC: dict[str, Any] = {
    "target_size": (SIZE, SIZE),
    "batch_size": BATCH,
    "rotation_range": ROTATION,
    "width_shift_range": SHIFT,
    "height_shift_range": SHIFT,
    "zoom_range": ZOOM,
    "horizontal_flip": True,
    "rescale": 1 / 255,
    "seed": 1,
}
