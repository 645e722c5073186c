"""Which numeric code paths shape a stream's bytes: the families a spec uses.

Replicas must give the same bytes for the same batch, but two servers with another OpenCV
build, another BLAS kernel or another CPU (a baseline-SSE path against an AVX2 one) can
differ by one unit in rare pixels after a resize, a warp or a photometric operation. Each
server computes, at start, a digest per *family* of operations from canonical inputs (its
numerics fingerprint, ``GET /v1/server``); a stream's header carries the digests of the
families its spec uses. A client never mixes replicas that disagree on one of those.

This module is the one place that says which families a spec uses, so the server (for the
header) and the client (to group replicas before it streams) agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from .spec import StreamSpec

__all__ = ["FAMILIES", "differing", "families"]

#: Every family a server fingerprints, in a fixed order.
FAMILIES = (
    "decode",
    "resize.nearest",
    "resize.bilinear",
    "resize.bicubic",
    "resize.lanczos",
    "resize.area",
    "matrix",
    "warp.0",
    "warp.1",
    "warp.3",
    "photometric.basic",
    "photometric.colour",
    "photometric.hue",
    "photometric.blur",
    "photometric.noise",
    "photometric.jpeg",
    "standardize",
    "mix",
)


def _geometry(spec: StreamSpec) -> bool:
    zoom = spec.zoom_range
    return bool(
        spec.rotation_range
        or spec.width_shift_range
        or spec.height_shift_range
        or spec.shear_range
        or (zoom != 0.0 and zoom != (1.0, 1.0))
        or spec.horizontal_flip
        or spec.vertical_flip
        or spec.random_crop_fraction < 1
        or spec.random_resized_crop_scale is not None
    )


def families(spec: StreamSpec) -> list[str]:
    """The families whose numerics shape the bytes of ``spec``'s stream, in ``FAMILIES``
    order. Decoding and resizing count for every stream of a dataset; uploaded images are
    neither decoded nor resized."""
    used: set[str] = set()
    if spec.arrays is None or spec.arrays.x is None:
        used |= {
            "decode",
            f"resize.{'area' if spec.interpolation == 'box' else spec.interpolation}",
        }
        if spec.class_mode == "mask":
            used.add("resize.nearest")
    if _geometry(spec):
        used |= {"matrix", f"warp.{spec.interpolation_order}"}
        if spec.class_mode == "mask":
            used.add("warp.0")
    if spec.channel_shift_range or spec.brightness_range is not None:
        used.add("photometric.basic")
    if (
        spec.contrast_range is not None
        or spec.saturation_range is not None
        or spec.grayscale_probability
    ):
        used.add("photometric.colour")
    for name, active in (
        ("hue", bool(spec.hue_shift_range)),
        ("blur", spec.blur_sigma_range is not None),
        ("noise", spec.noise_std_range is not None),
        ("jpeg", spec.jpeg_quality_range is not None),
    ):
        if active:
            used.add(f"photometric.{name}")
    if (
        spec.rescale not in (None, 0.0, 1.0)
        or spec.samplewise_center
        or spec.featurewise_center
        or spec.zca_whitening
    ):
        used.add("standardize")
    if spec.mixup_alpha or spec.cutmix_alpha:
        used.add("mix")
    return [family for family in FAMILIES if family in used]


def differing(mine: Mapping[str, str], theirs: Mapping[str, str], wanted: list[str]) -> list[str]:
    """The families of ``wanted`` on which two fingerprints disagree (a family one of them
    lacks counts as a disagreement: nothing says its bytes would be the same)."""
    return [name for name in wanted if mine.get(name) is None or mine.get(name) != theirs.get(name)]
