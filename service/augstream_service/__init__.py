"""augstream's server: decode and augment images next to the data, stream batches over HTTP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("augstream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
