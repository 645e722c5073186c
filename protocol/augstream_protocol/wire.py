"""Wire protocol v1: length-prefixed, checksummed frames; sans-IO on both sides.

Every frame is a 9-byte prefix followed by its body::

    offset  size  field
    0       4     body length in bytes (unsigned, big-endian)
    4       1     kind (see ``FrameKind``)
    5       4     CRC-32 of the body (unsigned, big-endian; zlib's polynomial)

Header, error and end bodies are UTF-8 JSON objects. A batch body is a 4-byte big-endian
length, a JSON object of metadata (epoch, batch, sample ids, array names and sizes), then
each array in NumPy's own ``.npy`` format, one after another. Object dtypes are refused, so
decoding never unpickles anything. ``docs/protocol.md`` is the full description.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ProtocolError, TruncatedError
from .npy import npy_header, parse_npy_header

try:
    # zlib-ng's CRC-32 (same polynomial, same values) runs at several GB/s where the system
    # zlib's does ~2: checksumming a 4.8 MB batch costs 0.5 ms instead of 2.3, on each side.
    from zlib_ng.zlib_ng import crc32, crc32_combine

    _combine: Callable[[int, int, int], int] | None = crc32_combine
except ImportError:  # a platform without its wheel: the same values, slower
    from zlib import crc32

    _combine = None  # Python's zlib has no crc32_combine: each frame is checksummed whole

#: Whether ``encode_batch`` can take the CRC-32 of an array's rows in place of reading them
#: (``row_crcs``): whoever wrote the rows checksums them while they are in its cache.
ROW_CRCS = _combine is not None

__all__ = [
    "PROTOCOL_VERSION",
    "BatchFrame",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "COMPACT_REQUEST",
    "INPUT_WAIT_HEADER",
    "PREFIX_SIZE",
    "ROW_CRCS",
    "check_crc",
    "crc32",
    "decode_batch",
    "encode_batch",
    "encode_json_frame",
    "expand",
    "frame_start",
]

PROTOCOL_VERSION = 1
MEDIA_TYPE = "application/vnd.augstream.v1"
#: The request header (name, value) by which a client says it expands compact images: float
#: images that are exactly uint8 pixels times a scale may then travel as those pixels, a
#: quarter of the bytes (the header's ``arrays.x.wire`` says so; see ``expand``).
COMPACT_REQUEST = ("Augstream-Accept", "scaled-uint8")
#: The request header by which a client tells a server how long its consumer waited for
#: batches since it last said: ``"<seconds>;<batches taken>"`` (also ``POST /v1/report``).
INPUT_WAIT_HEADER = "Augstream-Input-Wait"

_PREFIX = struct.Struct(">IBI")
#: Bytes before every frame's body: length, kind, CRC-32.
PREFIX_SIZE = _PREFIX.size
_META_LEN = struct.Struct(">I")
#: Frames above this size are refused by default (a batch of 1024 RGBA 1024x1024 float32 is 16 GiB;
#: servers cap batch bytes far lower).
DEFAULT_MAX_FRAME_BYTES = 1 << 31


class FrameKind(enum.IntEnum):
    """What a frame carries."""

    HEADER = 1
    BATCH = 2
    ERROR = 3
    END = 4
    HEARTBEAT = 5
    #: The server is stopping; resume elsewhere (or after its restart) at ``next``.
    GOAWAY = 6


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: its kind and its raw (checksum-verified) body."""

    kind: FrameKind
    body: bytes | bytearray

    def json(self) -> dict[str, Any]:
        """The body parsed as the JSON object that header, error and end frames carry."""
        try:
            value = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"{self.kind.name} frame body is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ProtocolError(f"{self.kind.name} frame body must be a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class BatchFrame:
    """A decoded batch: its place in the stream, the sample ids it holds and its arrays."""

    epoch: int
    batch: int
    sample_ids: list[int]
    arrays: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    #: Samples of this batch left out under a dataset's ``skip`` policy: (id, reason).
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _prefix(kind: FrameKind, body_len: int, crc: int) -> bytes:
    return _PREFIX.pack(body_len, kind, crc)


def encode_json_frame(kind: FrameKind, payload: Mapping[str, Any] | None = None) -> bytes:
    """Encode a header, error, end or heartbeat frame."""
    body = json.dumps(payload or {}, separators=(",", ":")).encode()
    return _prefix(kind, len(body), crc32(body)) + body


def encode_batch(
    epoch: int,
    batch: int,
    sample_ids: Sequence[int],
    arrays: Mapping[str, np.ndarray[Any, Any]],
    skipped: Sequence[tuple[int, str]] = (),
    row_crcs: Mapping[str, Sequence[int]] | None = None,
) -> list[bytes | memoryview]:
    """Encode a batch frame as a list of buffers, to be written in order without joining.

    Array data is referenced, not copied: keep the arrays alive until the parts are written.
    ``skipped`` lists the samples left out of the batch, with the reason for each.
    ``row_crcs`` may give, for an array, the CRC-32 of each of its rows (``array[i]``'s
    bytes): the frame's CRC is then combined from them instead of read from the array (where
    ``ROW_CRCS``; they must be right, or the receiver refuses the frame).
    """
    parts: list[bytes | memoryview] = []
    sizes = []
    rows: dict[int, Sequence[int]] = {}  # a data part's index in ``parts``: its rows' CRCs
    for name, array in arrays.items():
        if array.dtype.hasobject:
            raise TypeError(f"array {name!r} has an object dtype, which the wire refuses")
        contiguous = np.ascontiguousarray(array)
        header = npy_header(contiguous)
        data = contiguous.reshape(-1).view(np.uint8).data
        given = row_crcs.get(name) if row_crcs is not None and ROW_CRCS else None
        if given is not None and contiguous.ndim and len(given) == len(contiguous):
            rows[len(parts) + 1] = given
        parts += [header, data]
        sizes.append({"name": name, "nbytes": len(header) + data.nbytes})
    fields: dict[str, Any] = {"epoch": epoch, "batch": batch, "ids": list(sample_ids)}
    if skipped:
        fields["skipped"] = [{"id": i, "reason": reason} for i, reason in skipped]
    meta = json.dumps({**fields, "arrays": sizes}, separators=(",", ":")).encode()
    head = _META_LEN.pack(len(meta)) + meta
    crc = crc32(head)
    for index, part in enumerate(parts):
        given = rows.get(index)
        if given is None or _combine is None:
            crc = crc32(part, crc)
            continue
        row_bytes = len(part) // len(given) if given else 0
        for row_crc in given:
            crc = _combine(crc, row_crc, row_bytes)
    length = len(head) + sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    return [_prefix(FrameKind.BATCH, length, crc) + head, *parts]


def expand(
    x: np.ndarray[Any, Any],
    entry: Mapping[str, Any],
    out: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """``x`` as the caller asked for it, given its header entry (``arrays.x``).

    A compact ``x`` (``entry["wire"]`` is ``{"dtype": "uint8", "scale": s}``) becomes
    ``float32(x) * float32(s)``: the very operation, in the same precision, that the server
    would have done, so the result is bit for bit the same. ``out``: a float32 array of
    ``x``'s shape to write it into (a part of a batch expanded on another thread), only for
    a compact ``x``.
    """
    wire = entry.get("wire")
    if wire is None:
        if out is not None:
            raise ValueError("out is only for compact images")
        return x
    if x.dtype != np.uint8 or wire.get("dtype") != "uint8" or entry.get("dtype") != "float32":
        raise ProtocolError(f"cannot expand {x.dtype} images sent as {wire!r} to {entry!r}")
    scale = np.float32(wire.get("scale", 1.0))
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    elif out.shape != x.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {x.shape}, not {out.dtype} {out.shape}")
    if scale == 1:
        out[...] = x
    else:
        np.multiply(x, scale, out=out, dtype=np.float32)
    return out


def _read_npy(view: memoryview, name: str) -> np.ndarray[Any, Any]:
    try:
        header = parse_npy_header(view)
    except ValueError as exc:
        raise ProtocolError(f"array {name!r} is not a valid .npy blob: {exc}") from exc
    shape, dtype, offset = header.shape, header.dtype, header.offset
    if dtype.hasobject:
        raise ProtocolError(f"array {name!r} has an object dtype; refusing to unpickle")
    if dtype.itemsize == 0 or any(d < 0 for d in shape):
        raise ProtocolError(f"array {name!r} declares an impossible shape {shape} of {dtype}")
    count = math.prod(shape)  # Python ints: no overflow to a misleading zero
    if view.nbytes - offset != count * dtype.itemsize:
        raise ProtocolError(
            f"array {name!r} declares shape {shape} {dtype} but carries "
            f"{view.nbytes - offset} bytes"
        )
    try:
        flat = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
        array: np.ndarray[Any, Any] = (
            flat.reshape(shape[::-1]).T if header.fortran_order else flat.reshape(shape)
        )
    except ValueError as exc:
        raise ProtocolError(f"array {name!r} cannot be read: {exc}") from exc
    return array


def decode_batch(body: bytes | bytearray) -> BatchFrame:
    """Decode a batch frame's body; arrays are views into ``body`` (writable when it is a
    ``bytearray``, as ``FrameDecoder`` gives)."""
    view = memoryview(body)
    if len(view) < _META_LEN.size:
        raise ProtocolError("batch frame too short for its metadata length")
    (meta_len,) = _META_LEN.unpack_from(view)
    start = _META_LEN.size + meta_len
    if start > len(view):
        raise ProtocolError("batch metadata runs past the end of the frame")
    try:
        meta = json.loads(bytes(view[_META_LEN.size : start]))
        epoch, batch, ids = int(meta["epoch"]), int(meta["batch"]), [int(i) for i in meta["ids"]]
        entries = [(str(a["name"]), int(a["nbytes"])) for a in meta["arrays"]]
        skipped = [(int(s["id"]), str(s["reason"])) for s in meta.get("skipped", ())]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"bad batch metadata: {exc}") from exc
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, nbytes in entries:
        end = start + nbytes
        if nbytes < 0 or end > len(view):
            raise ProtocolError(f"array {name!r} runs past the end of the frame")
        arrays[name] = _read_npy(view[start:end], name)
        start = end
    if start != len(view):
        raise ProtocolError(f"{len(view) - start} unexpected bytes after the last array")
    return BatchFrame(epoch=epoch, batch=batch, sample_ids=ids, arrays=arrays, skipped=skipped)


def frame_start(
    prefix: bytes | bytearray | memoryview, max_frame_bytes: int
) -> tuple[FrameKind, int, int]:
    """A frame's kind, body length and CRC-32 from its ``PREFIX_SIZE``-byte prefix; raises
    ``ProtocolError`` for an unknown kind or a body over ``max_frame_bytes``."""
    length, kind, crc = _PREFIX.unpack(prefix)
    try:
        frame_kind = FrameKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {kind}") from None
    if length > max_frame_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {max_frame_bytes} bytes")
    return frame_kind, length, crc


def check_crc(kind: FrameKind, body: bytes | bytearray | memoryview, crc: int) -> None:
    """Raise ``ProtocolError`` unless ``body`` has the CRC-32 its prefix declared."""
    if crc32(body) != crc:
        raise ProtocolError(f"{kind.name} frame failed its CRC-32 check")


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back.

    It does no I/O and keeps no more than one partial frame buffered. Each body is copied
    once, from the fed bytes into a buffer of its declared size (megabyte batches arrive in
    many small reads; gathering them in one growing buffer would copy each byte again).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._prefix = bytearray()
        self._max = max_frame_bytes
        #: The frame being filled: its kind, CRC, body and how much of the body has arrived.
        self._frame: tuple[FrameKind, int, bytearray] | None = None
        self._filled = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._prefix) + (_PREFIX.size + self._filled if self._frame else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order."""
        view = memoryview(data).cast("B")
        frames: list[Frame] = []
        while view.nbytes:
            if self._frame is None:
                wanted = _PREFIX.size - len(self._prefix)
                self._prefix += view[:wanted]
                view = view[wanted:]
                if len(self._prefix) < _PREFIX.size:
                    break
                self._start_frame()
                assert self._frame is not None
            kind, crc, body = self._frame
            take = min(len(body) - self._filled, view.nbytes)
            body[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(body):  # (at once for an empty body)
                self._frame = None
                check_crc(kind, body, crc)
                # A bytearray, so the arrays decoded from it are writable (x /= 255 works).
                frames.append(Frame(kind, body))
        return frames

    def _start_frame(self) -> None:
        kind, length, crc = frame_start(self._prefix, self._max)
        self._prefix.clear()
        self._frame = (kind, crc, bytearray(length))
        self._filled = 0

    def close(self) -> None:
        """Declare the end of the input; raise if it stopped inside a frame."""
        if self.pending:
            raise TruncatedError(
                f"stream ended inside a frame ({self.pending} bytes of it received)"
            )
