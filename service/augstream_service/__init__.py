"""augstream's server: decode and augment images next to the data, stream batches over HTTP."""

import os
from importlib.metadata import PackageNotFoundError, version

from .limits import DEFAULT_MAX_IMAGE_PIXELS

# OpenCV reads its pixel limit once, when it is imported (by .app below): set it first.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_IMAGE_PIXELS))

try:
    __version__ = version("augstream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
