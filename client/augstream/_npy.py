"""Arrays as ``.npy`` bytes for upload, named by their SHA-256 (content addressing)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NpyPayload", "encode_npy"]

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
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    data = memoryview(array.reshape(-1).view(np.uint8))
    digest = hashlib.sha256(header.getvalue())
    digest.update(data)
    return NpyPayload(digest=digest.hexdigest(), header=header.getvalue(), data=data)
