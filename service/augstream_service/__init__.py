"""augstream's server: decode and augment images next to the data, stream batches over HTTP."""

import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .limits import DEFAULT_MAX_IMAGE_PIXELS

# OpenCV reads its pixel limit once, when it is imported (by .app below): set it first.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_IMAGE_PIXELS))

try:
    __version__ = version("augstream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``augstream --help`` and the client commands need none of
    # FastAPI, OpenCV or prometheus-client, and start faster without them.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
