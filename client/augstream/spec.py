"""The stream spec and the types of its fields (the protocol package's, ``augstream_protocol``).

Public names of the client, defined once in the protocol package that the server
imports too."""

from __future__ import annotations

from augstream_protocol.fields import (
    MAX_REPLICAS,
    MAX_SIDE,
    ArrayRefs,
    ClassMode,
    ColorMode,
    Digest,
    FillMode,
    Interpolation,
    Position,
    Shard,
    ShiftRange,
    StatsRefs,
    channels_for,
    field_value,
)
from augstream_protocol.spec import (
    StreamSpec,
)

__all__ = [
    "ArrayRefs",
    "ClassMode",
    "ColorMode",
    "Digest",
    "FillMode",
    "Interpolation",
    "MAX_REPLICAS",
    "MAX_SIDE",
    "Position",
    "Shard",
    "ShiftRange",
    "StatsRefs",
    "StreamSpec",
    "channels_for",
    "field_value",
]
