"""This server's numerics fingerprint, and the ``portable`` numerics a fleet can share.

At start the server runs every family of operations (``augstream_protocol.numerics``) on
canonical inputs through the very functions streams use, and keeps a short digest of each
result: two servers whose digests agree for a spec's families make the same bytes for its
batches. The libraries that shape the bytes (OpenCV and its CPU dispatch, IPP, numpy and its
SIMD dispatch, the BLAS) are reported beside it, so a mismatch can be explained.

``portable`` numerics (``portable.py``) pin those libraries to their baseline code paths (no
AVX2/AVX-512 dispatch in OpenCV or numpy, no IPP, OpenBLAS's generic x86-64 kernels), so that
replicas on different CPUs agree.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import platform
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from augstream_protocol.fields import FillMode, Interpolation
from augstream_protocol.numerics import FAMILIES
from augstream_protocol.spec import StreamSpec

from .augment.apply import _photometric, standardize, warp
from .augment.batchops import mix_batch
from .augment.geometry import affine_matrix
from .augment.params import TransformParams
from .augment.photometric import adjust
from .decode import decode_image, resize
from .portable import PORTABLE_ENVIRONMENT, NumericsMode, running_mode
from .stats import Statistics

__all__ = [
    "PORTABLE_ENVIRONMENT",
    "NumericsMode",
    "check_mode",
    "fingerprint",
    "libraries",
    "running_mode",
]

# A 32 x 24 JPEG (quality 85) of gradients and noise: decoders that agree on it agree on
# the IDCT, upsampling and colour conversion streams use. Fixed bytes, so every server
# decodes the same input whatever its encoder would write.
_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAUDBAQEAwUEBAQFBQUGBwwIBwcHBw8LCwkMEQ8SEhEPERETFhwXExQa"
    "FRERGCEYGh0dHx8fExciJCIeJBweHx7/2wBDAQUFBQcGBw4ICA4eFBEUHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4e"
    "Hh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh7/wAARCAAYACADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD5r0rw40hbeNzr1VTx24Pvj2PeuisdAJC5iyCuTgnHqeme2PT7"
    "3416Dp3h1ziN1JiY7S2c4BGR8ueP5YxxXSW/huTKSJGxGCNpQlk4wT9T/wDX+nBlfEOq1O/LsTbS559Y+HnBiYkb"
    "Ao4Py9ff05HHb6DNdNp/h5xMP3RMZ+8r8H723jGBn/Cu5svDRBO+NF24Az2GR7+h9fxxWjqNva6Jpnn3QJkKkQRK"
    "QGkOMkgAcAAgk++OtfqGUZ46soxhq2fZ0Mzo4Kg69aSjCKu3/X/D9C/pfhzaWdx8xHA3A9ecdc8ZJ49utdNaeGQy"
    "kxH5sfe7DnI655H1/wDrlFfyllWLq6O5+YZdUfKpF7WLa10bTjJOWdmYrDEDhpGHbPbHGSfyJrhLvTbvVL+S7uTu"
    "LnlQcgDnA9u/T3zzzRRX7lwfXnHDqrfVn59x1neMqZh9Qc/3ULNLu2k7vu1fTt95/9k="
)
#: Transforms whose matrices and warps are fingerprinted: rotation, shift, shear, zoom and
#: flips at values no grid alignment hides.
_PARAMS = (
    TransformParams(theta=13.7, tx=2.3, ty=-1.9, shear=4.1, zx=0.93, zy=1.07),
    TransformParams(theta=-31.3, tx=-4.6, zx=1.19, zy=1.11, flip_horizontal=True),
    TransformParams(theta=7.9, ty=3.3, shear=-9.7, flip_vertical=True),
)
_FILLS: tuple[FillMode, ...] = ("constant", "nearest", "reflect", "wrap")
_RESIZES: tuple[Interpolation, ...] = ("nearest", "bilinear", "bicubic", "lanczos", "area")
Array = np.ndarray[Any, Any]


def _digest(*arrays: Any) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        hasher.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        hasher.update(contiguous.tobytes())
    return hasher.hexdigest()[:16]


def _canonical() -> tuple[Array, Array]:
    """A decoded RGB image and a float32 one of 48 x 64 pixels, the same on every server
    (numpy's bit generators are portable; the decode is checked on its own)."""
    rng = np.random.Generator(np.random.PCG64(20261201))
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return image, image.astype(np.float32)


def _spec(**fields: Any) -> StreamSpec:
    return StreamSpec.model_validate({"dataset": "fingerprint", **fields})


def _families() -> dict[str, str]:
    image, floats = _canonical()
    found: dict[str, str] = {}
    found["decode"] = _digest(
        *(
            decode_image(_JPEG, color_mode=mode, target_size=size, reduce=reduce)
            for mode in ("rgb", "grayscale", "rgba")
            for size, reduce in (((24, 32), False), ((12, 16), True))
        )
    )
    for name in _RESIZES:
        found[f"resize.{name}"] = _digest(resize(image, 17, 23, name), resize(image, 101, 83, name))
    found["matrix"] = _digest(*(affine_matrix(p, 48, 64) for p in _PARAMS))
    for order in (0, 1, 3):
        found[f"warp.{order}"] = _digest(
            *(
                warp(source, p, fill_mode=fill, cval=17.0, order=order)
                for source in (image, image[:, :, :1], floats)
                for p in _PARAMS
                for fill in _FILLS
            )
        )
    basic = TransformParams(channel_shift=23.7, brightness=0.83)
    found["photometric.basic"] = _digest(
        _photometric(image, basic, False), _photometric(image, basic, True)
    )
    for family, params in (
        ("colour", TransformParams(contrast=1.31, saturation=0.67, grayscale=True)),
        ("hue", TransformParams(hue=-37.3)),
        ("blur", TransformParams(blur=1.37)),
        ("noise", TransformParams(noise=(11.3, 20261201))),
        ("jpeg", TransformParams(jpeg_quality=61)),
    ):
        found[f"photometric.{family}"] = _digest(adjust(floats, params))
    spec = _spec(rescale=1 / 255, samplewise_center=True, samplewise_std_normalization=True)
    batch = np.stack([floats, floats[::-1]])
    whitened = batch.copy()
    features = floats.size
    zca = np.random.Generator(np.random.PCG64(7)).standard_normal(
        (features, features), dtype=np.float32
    )
    Statistics(mean=floats[:1, :1], std=floats[:1, :1] + 1, zca_whitening_matrix=zca).apply(
        whitened
    )
    found["standardize"] = _digest(standardize(floats, spec), whitened)
    mixed = mix_batch(
        np.random.Generator(np.random.PCG64(3)),
        {"x": np.stack([image, image[::-1]]), "y": np.eye(2, dtype=np.float32)},
        _spec(mixup_alpha=0.4),
    )
    found["mix"] = _digest(mixed["x"], mixed["y"])
    assert tuple(found) == FAMILIES  # the protocol's list and this one move together
    return found


@lru_cache(maxsize=1)
def fingerprint() -> dict[str, str]:
    """A digest per family of operations (``augstream_protocol.numerics.FAMILIES``), and
    ``digest``, one digest of them all. Computed once per process (~0.1 s)."""
    families = _families()
    return {
        **families,
        "digest": hashlib.sha256(repr(sorted(families.items())).encode()).hexdigest()[:16],
    }


def _numpy_dispatch() -> list[str]:
    """The SIMD targets numpy dispatches to on this CPU (beyond its baseline)."""
    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # numpy 1.x
        umath = importlib.import_module("numpy.core._multiarray_umath")
    features: dict[str, bool] = getattr(umath, "__cpu_features__", {})
    return [name for name in getattr(umath, "__cpu_dispatch__", ()) if features.get(name)]


def _blas() -> str:
    try:
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError, AttributeError):
        return "unknown"


@lru_cache(maxsize=1)
def libraries() -> dict[str, Any]:
    """The libraries and CPU code paths that shape the bytes, for people reading a
    mismatch: versions, what OpenCV and numpy dispatch to, IPP, the BLAS."""
    return {
        "opencv": cv2.__version__,
        "opencv_disabled": os.environ.get("OPENCV_CPU_DISABLE", ""),
        "ipp": cv2.ipp.getIppVersion() if cv2.ipp.useIPP() else "off",
        "numpy": np.__version__,
        "numpy_dispatch": _numpy_dispatch(),
        "blas": _blas(),
        "blas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto"),
        "machine": platform.machine(),
        "numerics": running_mode(),
    }


def check_mode(wanted: NumericsMode) -> None:
    """Refuse to serve with numerics other than the settings' ``numerics``: the switches
    were fixed when the libraries loaded, so the process must have started with them."""
    if running_mode() == wanted:
        return
    if wanted == "portable":
        raise ValueError(
            f"numerics='portable' needs the process to start with {PORTABLE_ENVIRONMENT} in "
            "its environment (augstream serve restarts itself with them; in a container, set "
            "them in its environment)"
        )
    raise ValueError(
        "numerics='native', but the process was started with the portable environment "
        f"({sorted(PORTABLE_ENVIRONMENT)}): start it without those variables"
    )
