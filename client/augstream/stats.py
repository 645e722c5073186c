"""Dataset statistics requests and answers (``augstream_protocol.stats``).

Public names of the client, defined once in the protocol package that the server
imports too."""

from __future__ import annotations

from augstream_protocol.stats import (
    DatasetStats,
    StatsRequest,
)

__all__ = [
    "DatasetStats",
    "StatsRequest",
]
