"""The protocol augstream's client and server both speak: the stream spec, the wire format
and what a server says about its datasets and streams.

It sits at the bottom of the house: it imports neither ``augstream`` (the client) nor
``augstream_service`` (the server), and both import it. It needs numpy, pydantic and
(for fast checksums, optionally) zlib-ng only. ``docs/protocol.md`` is its normative text.

- ``spec``: ``StreamSpec``, made of ``selection.Selection`` (what is read, how it is
  batched) and ``augmentation.Augmentation`` (how each sample is transformed), with the
  types of ``fields``;
- ``wire``: frames, their encoder and the incremental decoder; ``npy``: ``.npy`` bytes;
- ``info`` and ``stats``: what the server answers about datasets, streams and fits;
- ``errors``: the root of augstream's exception tree.
"""

from .errors import AugstreamError, ProtocolError, TruncatedError
from .fields import ArrayRefs, Position, Shard, StatsRefs
from .info import DatasetInfo, FileListing, ServerInfo, StreamHeader
from .spec import StreamSpec
from .stats import DatasetStats, StatsRequest
from .wire import PROTOCOL_VERSION

__all__ = [
    "PROTOCOL_VERSION",
    "ArrayRefs",
    "AugstreamError",
    "DatasetInfo",
    "DatasetStats",
    "FileListing",
    "Position",
    "ProtocolError",
    "ServerInfo",
    "Shard",
    "StatsRefs",
    "StatsRequest",
    "StreamHeader",
    "StreamSpec",
    "TruncatedError",
]
