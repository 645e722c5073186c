"""The one definition of a stream request, shared by the client and the server.

A ``StreamSpec`` is a ``Selection`` (what is read and how it is batched, ``selection.py``)
and an ``Augmentation`` (how each sample is transformed, ``augmentation.py``), with the
checks that need both halves and the values they resolve (Keras' implied flags, the dtype).
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from .augmentation import Augmentation
from .fields import StatsRefs, channels_for
from .selection import Selection

__all__ = ["StreamSpec"]

# Labels that mixup and cutmix can mix: one-hot or multi-hot (categorical), 0/1 (binary).
_MIXABLE = ("categorical", "binary", "none", "input", "mask")


class StreamSpec(Augmentation, Selection):
    """What to stream: which dataset (or uploaded arrays), how to decode, batch and augment it.

    A batch is a pure function of ``(spec, epoch, batch index)``: the same spec always gives
    the same bytes. ``seed=None`` asks the server to pick one; the resolved spec in the
    stream header carries it, so a resumed stream stays identical. The fields are those of
    ``Selection`` followed by those of ``Augmentation``.
    """

    @model_validator(mode="after")
    def _check_operations(self) -> StreamSpec:
        if self.class_mode == "mask":
            if self.arrays is not None:
                raise ValueError(
                    "class_mode='mask' reads a dataset's images/ and masks/ folders; "
                    "it does not apply to arrays"
                )
            if self.classes is not None:
                raise ValueError(
                    "classes does not apply to class_mode='mask' (the classes are the "
                    "masks' pixel values); leave it unset"
                )
            if self.mixup_alpha:
                raise ValueError(
                    "mixup_alpha does not apply to class_mode='mask': a blend of two masks "
                    "is not a mask (cutmix_alpha is: it pastes the mask with the image)"
                )
        if (self.mixup_alpha or self.cutmix_alpha) and self.class_mode not in _MIXABLE:
            name = "mixup_alpha" if self.mixup_alpha else "cutmix_alpha"
            raise ValueError(
                f"{name} mixes labels, which needs class_mode 'categorical' or 'binary' "
                f"(or 'input', 'none', 'mask'); class_mode={self.class_mode!r} labels "
                "cannot be mixed"
            )
        if self.random_crop_fraction < 1 and self.random_resized_crop_scale is not None:
            raise ValueError(
                "random_crop_fraction and random_resized_crop_scale are two kinds of crop: "
                "set one of them"
            )
        if self.color_mode == "grayscale":
            for name, active in (
                ("saturation_range", self.saturation_range is not None),
                ("hue_shift_range", bool(self.hue_shift_range)),
                ("grayscale_probability", bool(self.grayscale_probability)),
            ):
                if active:
                    raise ValueError(
                        f"{name} changes colours; color_mode='grayscale' has none (use "
                        "color_mode='rgb' or 'rgba')"
                    )
        return self

    @model_validator(mode="after")
    def _resolve(self) -> StreamSpec:
        # As in Keras, std normalisation implies centring.
        if self.samplewise_std_normalization and not self.samplewise_center:
            object.__setattr__(self, "samplewise_center", True)
        # Keras' constructor: ZCA centres and replaces std normalisation; std implies centring.
        if self.zca_whitening:
            object.__setattr__(self, "featurewise_std_normalization", False)
        if self.zca_whitening or self.featurewise_std_normalization:
            object.__setattr__(self, "featurewise_center", True)
        self._check_stats()
        float_only = [
            name
            for name, active in (
                ("rescale", self.rescale not in (None, 0.0, 1.0)),
                ("samplewise_center", self.samplewise_center),
                ("featurewise_center", self.featurewise_center),
            )
            if active
        ]
        if self.dtype is None:
            object.__setattr__(self, "dtype", "float32" if float_only else "uint8")
        elif self.dtype == "uint8" and float_only:
            raise ValueError(
                f"dtype='uint8' cannot carry the result of {float_only[0]}; "
                "use dtype='float32' or leave dtype unset"
            )
        if self.subset is not None and not self.validation_split:
            raise ValueError(
                f"subset={self.subset!r} needs a validation_split in (0, 1), got "
                f"{self.validation_split}"
            )
        if self.epochs is not None and self.start.epoch >= self.epochs:
            raise ValueError(
                f"start.epoch must be < epochs ({self.epochs}), got {self.start.epoch}"
            )
        return self

    def _check_stats(self) -> None:
        stats = self.stats or StatsRefs()
        for name, flag in (
            ("mean", "featurewise_center"),
            ("std", "featurewise_std_normalization"),
            ("zca_whitening_matrix", "zca_whitening"),
        ):
            if getattr(stats, name) is not None and not getattr(self, flag):
                raise ValueError(f"stats.{name} is given but {flag} is off: set {flag}=True")

    @property
    def channels(self) -> int:
        """Channels per image for this spec's ``color_mode``."""
        return channels_for(self.color_mode)

    @property
    def output_dtype(self) -> str:
        """The resolved dtype of ``x`` (``dtype`` is never ``None`` after validation)."""
        return self.dtype or "uint8"

    def request_body(self) -> dict[str, Any]:
        """The spec as the JSON body of ``POST /v1/stream`` and ``/v1/files`` (defaults left
        out)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def with_start(self, epoch: int, batch: int, stride: int | None = None) -> StreamSpec:
        """The same stream, starting at ``(epoch, batch)`` (every ``stride``-th batch)."""
        changes: dict[str, Any] = {"start": {"epoch": epoch, "batch": batch}}
        if stride is not None:
            changes["stride"] = stride
        return self._updated(**changes)

    def with_range(self, epoch: int, batch: int, batches: int | None) -> StreamSpec:
        """The same stream's ``batches`` batches from ``(epoch, batch)`` (None: all the rest),
        one after another: what one replica is asked for."""
        return self._updated(start={"epoch": epoch, "batch": batch}, stride=1, batches=batches)

    def with_seed(self, seed: int) -> StreamSpec:
        """The same stream with a fixed ``seed``."""
        return self._updated(seed=seed)

    def _updated(self, **changes: Any) -> StreamSpec:
        # model_copy(update=...) skips validation; a changed spec must be checked again.
        return StreamSpec.model_validate({**self.model_dump(), **changes})
