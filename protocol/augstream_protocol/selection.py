"""What a stream reads and how it is cut into batches: the data-selection half of a spec.

Which dataset (or uploaded arrays), the classes and labels, the decoding size and colours,
the batch size, order, seed and start, shard, subset and epochs. ``StreamSpec`` adds the
augmentation half (``augmentation.Augmentation``) and the checks that need both.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .fields import (
    MAX_REPLICAS,
    ArrayRefs,
    ClassMode,
    ColorMode,
    DatasetName,
    Frozen,
    Interpolation,
    Position,
    Shard,
    Side,
)

__all__ = ["CLASS_MODES_WITH_LABELS", "Selection"]

CLASS_MODES_WITH_LABELS = ("categorical", "binary", "sparse")


class Selection(Frozen):
    """The fields that pick a stream's samples, decode them and put them in batches."""

    dataset: DatasetName | None = None
    arrays: ArrayRefs | None = None
    target_size: tuple[Side, Side] = (256, 256)
    color_mode: ColorMode = "rgb"
    classes: list[str] | None = Field(default=None, min_length=1)
    class_mode: ClassMode = "categorical"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    shuffle: bool = True
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    interpolation: Interpolation = "nearest"
    keep_aspect_ratio: bool = False
    dtype: Literal["uint8", "float32"] | None = None
    start: Position = Position()
    #: Every ``stride``-th batch from ``start``: one replica's part of a stream spread over
    #: ``stride`` servers (``Client`` with several URLs sets it; the batches are unchanged).
    stride: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    shard: Shard = Shard()
    epochs: Annotated[int, Field(ge=1)] | None = None
    validation_split: Annotated[float, Field(ge=0, lt=1)] = 0.0
    subset: Literal["training", "validation"] | None = None

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"class names must be unique, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> Selection:
        arrays = self.arrays
        if arrays is None:
            if self.dataset is None:
                raise ValueError("dataset: name a dataset of the server (or give arrays)")
            if self.class_mode in ("raw", "multi_output"):
                raise ValueError(
                    f"class_mode={self.class_mode!r} takes its labels from arrays.y; "
                    "a dataset's class folders give categorical, binary or sparse labels"
                )
            return self
        if arrays.x is not None and self.dataset is not None:
            raise ValueError("arrays.x streams uploaded images: leave dataset unset")
        if arrays.filenames is not None and self.dataset is None:
            raise ValueError("arrays.filenames names files of a dataset: set dataset")
        if self.class_mode in CLASS_MODES_WITH_LABELS and self.classes is None:
            raise ValueError(
                f"class_mode={self.class_mode!r} over arrays needs classes: the class names, "
                "in label order"
            )
        count = len(arrays.y)
        needed = {"multi_output": "at least one", "input": "no", "none": "no"}.get(
            self.class_mode, "exactly one"
        )
        if not {"exactly one": count == 1, "at least one": count >= 1, "no": count == 0}[needed]:
            raise ValueError(
                f"class_mode={self.class_mode!r} needs {needed} label array in arrays.y, "
                f"got {count}"
            )
        return self
