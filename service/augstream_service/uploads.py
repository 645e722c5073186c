"""Uploaded arrays, stored once under the SHA-256 of their ``.npy`` bytes.

The store is a folder of ``<digest>.npy`` files with a byte budget: the least recently used
files go first when a new upload would not fit. Arrays are memory-mapped read-only, so a
stream over a large upload costs page cache, not process memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from augstream_protocol.npy import UPLOAD_KINDS, encode_npy, parse_npy_header

__all__ = [
    "MAX_CONCURRENT_UPLOADS",
    "ArrayInfo",
    "UnknownArrayError",
    "UploadError",
    "UploadStore",
    "UploadTooLargeError",
    "UploadsBusyError",
]

log = logging.getLogger("augstream.uploads")

Array = np.ndarray[Any, Any]
_WRITE_BLOCK = 4 << 20
_OPEN_ARRAYS = 64
_MAX_DIMS = 8
#: A longer .npy header is refused (numpy itself reads at most 10,000 bytes of one).
_MAX_HEADER_BYTES = 1 << 16
#: Uploads received at once; more wait (429) rather than fill the disk in parallel.
MAX_CONCURRENT_UPLOADS = 4
#: How often a use refreshes an array's place in the eviction order (seconds).
_TOUCH_EVERY_S = 10.0
#: Leftovers of uploads cut off by a crash are removed once they are this old (seconds).
_STALE_INCOMING_S = 3600.0


class UploadError(ValueError):
    """An upload is not a plain ``.npy`` array of an accepted kind, or not what it claims."""


class UploadTooLargeError(UploadError):
    """An upload is larger than the server accepts."""


class UploadsBusyError(UploadError):
    """Too many uploads are being received at once; retry shortly."""


class UnknownArrayError(LookupError):
    """No uploaded array has that digest (never uploaded, or evicted since)."""

    def __init__(self, digest: str) -> None:
        super().__init__(
            f"no uploaded array {digest[:16]}... on this server: upload it first "
            "(it may have been evicted to make room)"
        )
        self.digest = digest


@dataclass(frozen=True)
class ArrayInfo:
    """What an uploaded array holds; ``nbytes`` counts its whole ``.npy`` encoding."""

    digest: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "digest": self.digest,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
        }


def _read_header(path: Path) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """The dtype, shape and data offset of a ``.npy`` file, checked for safe kinds."""
    with path.open("rb") as handle:
        head = handle.read(_MAX_HEADER_BYTES)
    try:
        header = parse_npy_header(head, versions=(1, 2))
    except ValueError as exc:
        raise UploadError(f"not a .npy array: {exc}") from exc
    shape, fortran, dtype, offset = header.shape, header.fortran_order, header.dtype, header.offset
    if fortran:
        raise UploadError("Fortran-ordered arrays are not accepted: send C order")
    if dtype.kind not in UPLOAD_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise UploadError(f"dtype {dtype} is not accepted: numbers, booleans or text only")
    if not 1 <= len(shape) <= _MAX_DIMS:
        raise UploadError(
            f"expected an array of rows with 1 to {_MAX_DIMS} dimensions, got shape {shape}"
        )
    count = math.prod(shape)  # Python ints: a huge shape cannot wrap around to a small size
    if shape[0] and not count:
        raise UploadError(f"the rows of shape {shape} hold no data")
    expected = offset + count * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise UploadError(
            f"the .npy data is {actual - offset} bytes, its header says {expected - offset}"
        )
    return dtype, tuple(int(n) for n in shape), offset


class UploadStore:
    """A folder of uploaded arrays with a byte budget."""

    def __init__(self, root: Path, *, max_upload_bytes: int, max_total_bytes: int) -> None:
        self.root = root
        self.max_upload_bytes = max_upload_bytes
        self.max_total_bytes = max_total_bytes
        self._open: OrderedDict[str, Array] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        # Making room and moving an upload in happen as one step, so parallel uploads cannot
        # together overshoot the budget.
        self._commit_lock = threading.Lock()
        self._receiving = 0  # touched only from the event loop
        self._remove_stale_incoming()

    def _remove_stale_incoming(self) -> None:
        # Replicas may share the folder: only leftovers far older than any upload go.
        if not self.root.is_dir():
            return
        cutoff = time.time() - _STALE_INCOMING_S
        for entry in os.scandir(self.root):
            with contextlib.suppress(OSError):
                if entry.name.startswith(".incoming-") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}.npy"

    def info(self, digest: str) -> ArrayInfo:
        """What ``digest`` holds; ``UnknownArrayError`` if it is not here."""
        array = self.load(digest)
        try:
            size = self._path(digest).stat().st_size
        except FileNotFoundError:  # evicted just now
            raise UnknownArrayError(digest) from None
        return ArrayInfo(digest, array.dtype.str, tuple(array.shape), size)

    def load(self, digest: str) -> Array:
        """The array ``digest``, memory-mapped read-only (opened once, then reused)."""
        with self._lock:
            array = self._open.get(digest)
            if array is not None:
                self._open.move_to_end(digest)
        if array is None:
            array = self._open_file(digest)
            with self._lock:
                self._open[digest] = array
                while len(self._open) > _OPEN_ARRAYS:
                    self._open.popitem(last=False)
        self._touch(digest)
        return array

    def _open_file(self, digest: str) -> Array:
        path = self._path(digest)
        try:
            # Only a regular file: opening a FIFO someone left in the folder would wait for
            # a writer for ever (and hold the worker that asked).
            if not stat.S_ISREG(path.stat().st_mode):
                raise UnknownArrayError(digest)
            try:
                array: Array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError:  # an empty array cannot be memory-mapped
                array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # gone (evicted), or unreadable: not usable here
            raise UnknownArrayError(digest) from None
        return array

    def _touch(self, digest: str) -> None:
        """Eviction goes by last use: refresh the file's time now and then."""
        now = time.monotonic()
        if now - self._touched.get(digest, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        try:
            os.utime(self._path(digest))
        except FileNotFoundError:
            with self._lock:
                self._open.pop(digest, None)
            raise UnknownArrayError(digest) from None
        self._touched[digest] = now

    def file(self, digest: str) -> Path:
        """The ``.npy`` file of ``digest``; ``UnknownArrayError`` if it is not here."""
        path = self._path(digest)
        if not path.is_file():
            raise UnknownArrayError(digest)
        self._touch(digest)
        return path

    def add(self, array: Array) -> ArrayInfo:
        """Store an array this server made (fitted statistics) as if it had been uploaded:
        under the digest ``Client.upload`` gives the same array, so clients and replicas
        can name it, and send it again only where it is missing."""
        payload = encode_npy(array)
        if self._path(payload.digest).is_file():
            return self.info(payload.digest)
        if payload.nbytes > self.max_upload_bytes:
            raise UploadTooLargeError(self._too_large(payload.nbytes))
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{secrets.token_hex(8)}"
        try:
            with incoming.open("wb") as handle:
                for chunk in payload.chunks():
                    handle.write(chunk)
            self._commit(incoming, payload.digest, payload.nbytes)
        finally:
            incoming.unlink(missing_ok=True)
        array = np.asarray(array)
        return ArrayInfo(payload.digest, array.dtype.str, tuple(array.shape), payload.nbytes)

    async def put(self, digest: str, body: AsyncIterator[bytes], length: int | None) -> ArrayInfo:
        """Store an upload that claims to be ``digest``; checked for size, hash and format."""
        if length is not None and length > self.max_upload_bytes:
            raise UploadTooLargeError(self._too_large(length))
        if self._receiving >= MAX_CONCURRENT_UPLOADS:
            raise UploadsBusyError(
                f"{MAX_CONCURRENT_UPLOADS} uploads are being received already; retry shortly"
            )
        self._receiving += 1
        try:
            return await self._receive(digest, body)
        finally:
            self._receiving -= 1

    async def _receive(self, digest: str, body: AsyncIterator[bytes]) -> ArrayInfo:
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{secrets.token_hex(8)}"
        hasher = hashlib.sha256()
        size = 0
        try:
            with incoming.open("wb") as handle:
                pending: list[bytes] = []
                pending_bytes = 0
                async for chunk in body:
                    size += len(chunk)
                    if size > self.max_upload_bytes:
                        raise UploadTooLargeError(self._too_large(size, at_least=True))
                    hasher.update(chunk)
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= _WRITE_BLOCK:
                        await run_in_threadpool(handle.write, b"".join(pending))
                        pending, pending_bytes = [], 0
                await run_in_threadpool(handle.write, b"".join(pending))
            if hasher.hexdigest() != digest:
                raise UploadError(
                    f"the upload's SHA-256 is {hasher.hexdigest()}, not the {digest} it was sent as"
                )
            dtype, shape, _ = await run_in_threadpool(_read_header, incoming)
            await run_in_threadpool(self._commit, incoming, digest, size)
        finally:
            incoming.unlink(missing_ok=True)
        log.info("stored array %s (%s %s, %d bytes)", digest[:16], dtype, shape, size)
        return ArrayInfo(digest, dtype.str, shape, size)

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        what = f"more than {size - 1}" if at_least else str(size)
        return (
            f"the upload is {what} bytes; this server accepts arrays of at most "
            f"{self.max_upload_bytes} bytes"
        )

    def _commit(self, incoming: Path, digest: str, size: int) -> None:
        with self._commit_lock:
            self._make_room(size)
            os.replace(incoming, self._path(digest))
        self._touched.pop(digest, None)

    def _make_room(self, incoming: int) -> None:
        """Evict the least recently used arrays until ``incoming`` more bytes fit."""
        stored = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".npy"):
                with contextlib.suppress(FileNotFoundError):  # another replica evicted it
                    stat = entry.stat()
                    stored.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        stored.sort()
        total = sum(size for _, size, _ in stored)
        for _, size, path in stored:
            if total + incoming <= self.max_total_bytes:
                break
            # An open memory map keeps its data; only new streams miss the evicted array.
            path.unlink(missing_ok=True)
            with self._lock:
                self._open.pop(path.stem, None)
            total -= size
            log.info("evicted array %s (%d bytes) to make room", path.stem[:16], size)
