"""The parameters of one sample's random transform, in ImageDataGenerator's terms."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["IDENTITY", "TransformParams"]


class TransformParams(NamedTuple):
    """One drawn transform (an immutable tuple: one is made per sample, so construction must
    cost little). Geometry is an output-to-input map, as in Keras.

    ``tx`` moves the image horizontally and ``ty`` vertically (pixels; positive moves the
    content left/up), ``theta`` and ``shear`` are degrees (positive theta turns the content
    counter-clockwise), ``zx``/``zy`` scale the sampling grid (below 1 enlarges the content).
    ``channel_shift`` is added to every channel; ``brightness`` multiplies (1 is unchanged).

    The newer operations (None or False: not drawn): ``crop`` is the source window
    ``(x, y, width, height)`` in pixels that fills the output (applied before the rest of
    the geometry, so masks follow it); ``contrast`` and ``saturation`` are factors (1 is
    unchanged), ``hue`` degrees, ``blur`` a Gaussian sigma, ``noise`` a standard deviation
    and the seed of its pixels, ``jpeg_quality`` a re-encoding quality, ``erase`` the
    ``(top, left, height, width)`` box painted over.
    """

    theta: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    shear: float = 0.0
    zx: float = 1.0
    zy: float = 1.0
    flip_horizontal: bool = False
    flip_vertical: bool = False
    channel_shift: float | None = None
    brightness: float | None = None
    crop: tuple[float, float, float, float] | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    grayscale: bool = False
    blur: float | None = None
    noise: tuple[float, int] | None = None
    jpeg_quality: int | None = None
    erase: tuple[int, int, int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (for previews, logs and tests)."""
        return self._asdict()


IDENTITY = TransformParams()
