"""What a server says about its datasets and about a stream it starts (``augstream_protocol.info``).

Public names of the client, defined once in the protocol package that the server
imports too."""

from __future__ import annotations

from augstream_protocol.info import (
    DatasetInfo,
    FileListing,
    ServerInfo,
    StreamHeader,
)

__all__ = [
    "DatasetInfo",
    "FileListing",
    "ServerInfo",
    "StreamHeader",
]
