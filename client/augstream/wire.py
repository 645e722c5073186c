"""Wire protocol v1: frames, the encoder and the incremental decoder (``augstream_protocol.wire``).

Public names of the client, defined once in the protocol package that the server
imports too."""

from __future__ import annotations

from augstream_protocol.wire import (
    COMPACT_REQUEST,
    PREFIX_SIZE,
    PROTOCOL_VERSION,
    BatchFrame,
    Frame,
    FrameDecoder,
    FrameKind,
    check_crc,
    decode_batch,
    encode_batch,
    encode_json_frame,
    expand,
    frame_start,
)

__all__ = [
    "BatchFrame",
    "COMPACT_REQUEST",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "PREFIX_SIZE",
    "PROTOCOL_VERSION",
    "check_crc",
    "decode_batch",
    "encode_batch",
    "encode_json_frame",
    "expand",
    "frame_start",
]
