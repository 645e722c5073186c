"""augstream: augmented image batches streamed from a shared server.

``import augstream`` stays light (numpy, httpx, pydantic): TensorFlow, Keras, FastAPI and
OpenCV are imported only by the parts that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("augstream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from augstream_protocol.fields import ArrayRefs, Position, Shard, StatsRefs
from augstream_protocol.info import DatasetInfo, FileListing, ServerInfo, StreamHeader
from augstream_protocol.spec import StreamSpec
from augstream_protocol.stats import DatasetStats, StatsRequest

from ._exceptions import (
    AugstreamError,
    AuthenticationError,
    BusyError,
    ConnectionError,
    ConnectionLostError,
    IncompatibleStreamError,
    InvalidSpecError,
    NotFoundError,
    ProtocolError,
    ServerError,
    StreamClosedError,
    TooLargeError,
    TruncatedError,
)
from .client import Client
from .generator import ImageDataGenerator
from .stream import Batch, RetryPolicy, Stream

__all__ = [
    "ArrayRefs",
    "AugstreamError",
    "AuthenticationError",
    "Batch",
    "BusyError",
    "Client",
    "ConnectionError",
    "ConnectionLostError",
    "DatasetInfo",
    "DatasetStats",
    "FileListing",
    "ImageDataGenerator",
    "IncompatibleStreamError",
    "InvalidSpecError",
    "NotFoundError",
    "Position",
    "ProtocolError",
    "RetryPolicy",
    "ServerError",
    "ServerInfo",
    "Shard",
    "Stream",
    "StatsRefs",
    "StatsRequest",
    "StreamClosedError",
    "StreamHeader",
    "StreamSpec",
    "TooLargeError",
    "TruncatedError",
    "__version__",
]
