"""``.npy`` bytes: arrays encoded for upload (named by their SHA-256), and headers parsed.

numpy's own header reader calls ``ast.literal_eval``, which CPython 3.11 does not make
thread-safe (concurrent calls can fail with "AST constructor recursion depth mismatch"):
a client decoding batches in many threads, or a server checking uploads, hit it. The header
is a fixed, simple form, so it is parsed here with a strict grammar instead.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NpyHeader", "NpyPayload", "encode_npy", "npy_header", "parse_npy_header"]

#: dtype kinds an upload may hold: booleans, integers, floats and (file names) unicode text.
UPLOAD_KINDS = frozenset("biufU")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class NpyPayload:
    """One array's ``.npy`` encoding, ready to send without another copy."""

    digest: str
    header: bytes
    data: memoryview

    @property
    def nbytes(self) -> int:
        """Bytes on the wire."""
        return len(self.header) + self.data.nbytes

    def chunks(self) -> Iterator[bytes]:
        """The encoding in pieces of at most 1 MiB."""
        yield self.header
        for start in range(0, self.data.nbytes, _CHUNK):
            yield bytes(self.data[start : start + _CHUNK])


def encode_npy(array: Any) -> NpyPayload:
    """``array`` (C order, its own dtype) as ``.npy`` bytes and their SHA-256.

    The same values, dtype and shape always give the same bytes, so the digest names the
    content: a server that already holds it need not receive it again.
    """
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in UPLOAD_KINDS or array.dtype.fields is not None:
        raise TypeError(
            f"arrays to upload must hold numbers, booleans or text, got dtype {array.dtype}"
        )
    # Native byte order makes equal arrays encode equally whatever machine made them.
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    header = npy_header(array)
    data = memoryview(array.reshape(-1).view(np.uint8))
    digest = hashlib.sha256(header)
    digest.update(data)
    return NpyPayload(digest=digest.hexdigest(), header=header, data=data)


def npy_header(array: np.ndarray[Any, Any]) -> bytes:
    """The version 1.0 ``.npy`` header numpy writes for ``array``.

    numpy builds it anew each time (~9 µs of Python here; a server frames two arrays a
    batch); it depends only on the dtype, the shape and the memory order, so each is built
    once. Record dtypes (never a batch's) are built each time, so the cache's key (the
    dtype, by equality) only ever stands for a plain one."""
    if array.dtype.fields is not None:
        return _built(np.lib.format.header_data_from_array_1_0(array))
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)  # as numpy's
    return _header(array.dtype, array.shape, fortran)


@functools.lru_cache(maxsize=256)
def _header(dtype: np.dtype[Any], shape: tuple[int, ...], fortran: bool) -> bytes:
    descr = np.lib.format.dtype_to_descr(dtype)
    return _built({"descr": descr, "fortran_order": fortran, "shape": shape})


def _built(fields: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, fields)
    return buffer.getvalue()


_MAGIC = b"\x93NUMPY"
#: Header length field per format version: v1 a uint16, v2 and v3 a uint32 (little-endian).
_LENGTH_FIELDS = {1: struct.Struct("<H"), 2: struct.Struct("<I"), 3: struct.Struct("<I")}
_ENTRY = re.compile(
    r"\s*'(?P<key>\w+)'\s*:\s*"
    r"(?P<value>'[^']*'|True|False|\(\s*(?:\d+\s*,\s*)*(?:\d+\s*)?\))\s*(?:,|(?=}))"
)


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares, and where its data starts."""

    version: tuple[int, int]
    dtype: np.dtype[Any]
    fortran_order: bool
    shape: tuple[int, ...]
    offset: int


def parse_npy_header(blob: bytes | memoryview, versions: tuple[int, ...] = (1,)) -> NpyHeader:
    """The header at the start of ``blob`` (which may go on into the array data).

    Accepts the dictionary numpy writes (keys ``descr``, ``fortran_order`` and ``shape``, in
    any order) with a dtype string; raises ``ValueError`` saying what is wrong otherwise.
    """
    view = memoryview(blob)
    lead = bytes(view[: len(_MAGIC) + 2])
    if len(lead) < len(_MAGIC) + 2 or lead[: len(_MAGIC)] != _MAGIC:
        raise ValueError("no .npy magic string")
    version = (lead[-2], lead[-1])
    if version[0] not in versions or version[1] != 0:
        raise ValueError(f"unsupported .npy format version {version}")
    field = _LENGTH_FIELDS[version[0]]
    start = len(lead) + field.size
    if len(view) < start:
        raise ValueError("the .npy header is cut short")
    (length,) = field.unpack_from(view, len(lead))
    if len(view) < start + length:
        raise ValueError("the .npy header is cut short")
    try:
        text = bytes(view[start : start + length]).decode("latin1" if version[0] < 3 else "utf8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the .npy header is not text: {exc}") from exc
    found = _dictionary(text)
    if set(found) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"the .npy header has keys {sorted(found)}")
    descr, order, shape = found["descr"], found["fortran_order"], found["shape"]
    if not descr.startswith("'") or order not in ("True", "False") or not shape.startswith("("):
        raise ValueError(f"the .npy header has values of the wrong kinds: {text.strip()!r}")
    try:
        dtype = np.dtype(descr[1:-1])
    except TypeError as exc:
        raise ValueError(f"the .npy header's dtype {descr} is not understood") from exc
    dims = tuple(int(d) for d in shape[1:-1].replace(",", " ").split())
    return NpyHeader(version, dtype, order == "True", dims, start + length)


def _dictionary(text: str) -> dict[str, str]:
    """The keys and (unparsed) values of a header's one-level dictionary literal."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"the .npy header is not a dictionary: {body[:80]!r}")
    found: dict[str, str] = {}
    position = 1
    while position < len(body) - 1:
        entry = _ENTRY.match(body, position)
        if entry is None:
            if body[position:-1].strip():
                raise ValueError(f"the .npy header cannot be read: {body[:120]!r}")
            break
        if entry["key"] in found:
            raise ValueError(f"the .npy header repeats the key {entry['key']!r}")
        found[entry["key"]] = entry["value"]
        position = entry.end()
    return found
