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
    """A dataset the server offers (``GET /v1/datasets``), by name: clients never name paths
    or URLs. Unset only for uploaded images (``arrays.x``)."""
    arrays: ArrayRefs | None = None
    """Uploaded arrays the stream reads row by row (``Client.upload``): the images
    themselves (``flow``) or file names of ``dataset`` (``flow_from_dataframe``), with their
    labels and sample weights. Unset: the dataset's own files and class folders."""
    target_size: tuple[Side, Side] = (256, 256)
    """``(height, width)`` in pixels that every image is resized to, as in Keras; uploaded
    images stream at their own size."""
    color_mode: ColorMode = "rgb"
    """``grayscale``, ``rgb`` or ``rgba``: 1, 3 or 4 channels per image."""
    classes: list[str] | None = Field(default=None, min_length=1)
    """A subset of the class names, whose order defines the label indices; unset: every
    class, sorted. Over arrays with labels, the class names in label order (required)."""
    class_mode: ClassMode = "categorical"
    """What ``y`` is: ``categorical`` (one-hot), ``binary`` (0/1, two classes), ``sparse``
    (class index), ``input`` (``y`` is ``x``), ``none`` (``x`` only), ``mask`` (the image's
    segmentation mask); over arrays also ``raw`` and ``multi_output``."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    """Images per batch; the last batch of an epoch may be short, as in Keras."""
    shuffle: bool = True
    """Serve each epoch in its own order, a permutation drawn from ``(seed, epoch)``; off:
    the listing's order."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    """Seeds the epoch order and every sample's random transform. Unset: the client draws
    one (the server does for a bare request); the stream's header carries it."""
    interpolation: Interpolation = "nearest"
    """The filter that resizes images to ``target_size``: ``nearest``, ``bilinear``,
    ``bicubic``, ``lanczos``, ``area`` or ``box``, as in Keras."""
    keep_aspect_ratio: bool = False
    """Centre-crop each image to the target's aspect ratio before resizing, as in Keras."""
    dtype: Literal["uint8", "float32"] | None = None
    """The dtype of ``x``. Unset: ``float32`` when ``rescale`` or a normalisation is set,
    else ``uint8``."""
    start: Position = Position()
    """``(epoch, batch)`` the stream starts at: a resumed stream asks for its next batch."""
    stride: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    """Every ``stride``-th batch from ``start``: one replica's fixed part of a stream spread
    over ``stride`` servers, as clients before 0.2 asked (the batches are unchanged)."""
    batches: Annotated[int, Field(ge=1)] | None = None
    """Stream this many batches from ``start`` (fewer where ``epochs`` ends first), then an
    end frame: the range a client hands one replica of several. Unset: to the end of
    ``epochs``, or endlessly."""
    shard: Shard = Shard()
    """``(index, count)``: this stream's shard of every epoch; the ``count`` shards are
    disjoint and together cover each epoch once."""
    epochs: Annotated[int, Field(ge=1)] | None = None
    """The stream ends after epoch ``epochs - 1`` (an end frame follows). Unset: endless."""
    validation_split: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """The fraction held out as the validation subset: the first fraction of each class's
    sorted files (of the rows, over arrays), as in Keras."""
    subset: Literal["training", "validation"] | None = None
    """Which side of ``validation_split`` to stream; unset: every sample. Needs a
    ``validation_split``."""

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
