"""When float images may travel as their uint8 pixels (a quarter of the bytes).

A float32 image that is exactly ``float32(uint8 pixels) * rescale`` loses nothing when the
pixels travel and the client multiplies (``augstream.wire.expand``): the same operation in
the same precision. That holds when nothing between decoding and ``rescale`` leaves the
uint8 grid: only decoding, geometry and stream-control fields may differ from their defaults.
The list names what is known to keep uint8; any other field set (a photometric operation,
per-sample or dataset statistics, one added later) sends floats, so a new operation can never
be rounded by mistake.
"""

from __future__ import annotations

from augstream_protocol.spec import StreamSpec

from .samples import RowSamples, Samples

__all__ = ["UINT8_FIELDS", "exact_as_uint8"]

UINT8_FIELDS = frozenset(
    {
        # what is read and how it is batched
        "dataset", "arrays", "classes", "class_mode", "batch_size", "shuffle", "seed", "start",
        "stride", "batches", "shard", "epochs", "validation_split", "subset", "compat", "dtype",
        # decoding
        "target_size", "color_mode", "interpolation", "keep_aspect_ratio",
        # geometry: OpenCV warps uint8 to uint8
        "rotation_range", "width_shift_range", "height_shift_range", "shear_range",
        "zoom_range", "fill_mode", "cval", "horizontal_flip", "vertical_flip",
        "interpolation_order", "random_crop_fraction", "random_resized_crop_scale",
        "random_resized_crop_ratio", "mask_cval",
        # the scale the client applies
        "rescale",
    }
)  # fmt: skip


def exact_as_uint8(spec: StreamSpec, source: Samples) -> bool:
    """True when every float ``x`` of this stream is uint8 pixels times ``spec.rescale``."""
    if spec.output_dtype != "float32":
        return False
    if isinstance(source, RowSamples) and not source.uint8_images:
        return False
    defaults = StreamSpec.model_fields
    return all(
        name in UINT8_FIELDS or getattr(spec, name) == field.default
        for name, field in defaults.items()
    )
