"""Where a dataset's files live: a folder, a bucket prefix or a web folder, through fsspec.

One implementation for every backend: fsspec gives ``file://`` (and plain paths), ``s3://``
(s3fs), ``gs://`` (gcsfs) and ``http(s)://``. Files are named relative to the store's root;
a name never leaves it, and on a local disk neither does a symlink.

Messages of ``SourceError`` name files relative to the root only: they reach clients, and a
bucket's address or a server path is the operator's business.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import stat
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .limits import shown

__all__ = ["SourceError", "Store", "redact", "refuse_relative"]

log = logging.getLogger("augstream.stores")

#: Errors that will not go away by asking again.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_USERINFO = re.compile(r"//[^/@\s]+@")
#: Opened without blocking (a FIFO's open would wait for a writer), never inherited.
_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
#: Folders whose realpath check is remembered, at most (the cache starts over past it).
_FOLDERS_KEPT = 1 << 16


class SourceError(OSError):
    """A dataset file could not be listed or read; the message is safe to show clients.

    ``transient`` when asking again later may work (the store did not answer), not when the
    answer was final (not found, access denied, a broken manifest).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def redact(text: str) -> str:
    """``text`` without credentials written into URLs (``scheme://user:secret@host``)."""
    return _USERINFO.sub("//***@", text)


def refuse_relative(name: str) -> str | None:
    """Why ``name`` cannot name a file inside a dataset, or None when it can.

    Names are relative, "/"-separated and stay below the root: no absolute paths, no "..",
    no NUL, no backslashes (which would mean something else on another server).
    """
    if not name:
        return "empty file name"
    if "\0" in name:
        return "file name contains NUL"
    if "\\" in name:
        return f"{shown(name)!r} contains a backslash; use '/' between folders"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"{shown(name)!r} is absolute; file names are relative to the dataset"
    if ".." in name.split("/"):
        return f"{shown(name)!r} leaves the dataset"
    return None


def _failure(what: str, exc: BaseException) -> SourceError:
    """A client-safe account of a store error: its kind, not its addresses."""
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{what}: does not exist")
    if isinstance(exc, PermissionError):
        return SourceError(f"{what}: access denied (check the server's storage credentials)")
    if isinstance(exc, _PERMANENT):
        return SourceError(f"{what}: {type(exc).__name__}")
    return SourceError(f"{what}: the store did not answer ({type(exc).__name__})", transient=True)


class Store:
    """The files under one root URL, read concurrently, with transient failures retried.

    ``retries`` extra attempts follow a transient failure (a refused connection, a timeout,
    a 5xx), ``backoff_s`` apart and doubling up to ``max_backoff_s``; a permanent one (not
    found, access denied) is reported at once.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 2.0,
        concurrency: int = 32,
    ) -> None:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        self.fs: fsspec.AbstractFileSystem = fs
        self.local = isinstance(fs, LocalFileSystem)
        # Symlinks are judged against the real root, so a root that is itself a link works.
        self.root: str = os.path.realpath(root) if self.local else root.rstrip("/")
        self.url = redact(url)
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.concurrency = concurrency
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        #: Web servers have no listing to trust: their datasets need a manifest.
        self.can_list = not protocols & {"http", "https"}
        self._threads: ThreadPoolExecutor | None = None
        self._folders: dict[str, bool] = {}

    # -- names ---------------------------------------------------------------------------

    def path(self, relative: str) -> str:
        """The store path of ``relative``; refuses names that would leave the root."""
        problem = refuse_relative(relative)
        if problem is not None:
            raise SourceError(problem)
        path = f"{self.root}/{relative}"
        if self.local and not self._inside(path):
            raise SourceError(f"{shown(relative)!r} leads out of the dataset")
        return path

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def _folder_inside(self, folder: str) -> bool:
        """``_inside`` for a folder, remembered: every file of a class folder shares it (the
        realpath walk costs ~10 microseconds of Python per file otherwise)."""
        known = self._folders.get(folder)
        if known is None:
            if len(self._folders) > _FOLDERS_KEPT:
                self._folders.clear()
            known = self._folders[folder] = self._inside(folder)
        return known

    def _relative(self, path: str) -> str:
        return posixpath.relpath(self.fs._strip_protocol(path), self.root)

    # -- listing -------------------------------------------------------------------------

    def folders(self) -> list[str]:
        """The root's subfolders (not hidden, not symlinks), sorted."""
        entries = self._retry("the dataset's root", lambda: self.fs.ls(self.root, detail=True))
        names = [
            posixpath.basename(entry["name"].rstrip("/"))
            for entry in entries
            if entry.get("type") == "directory" and not entry.get("islink", False)
        ]
        return sorted(name for name in names if not name.startswith("."))

    def files_below(self, folder: str) -> list[str]:
        """Every file below ``folder`` (relative to the root; "" for all), links leaving the
        root left out."""
        base = self.path(folder) if folder else self.root
        found = self._retry(folder or "the dataset", lambda: self.fs.find(base))
        paths = found if isinstance(found, list) else list(found)
        if self.local:
            paths = [path for path in paths if self._inside(path)]
        return [self._relative(path) for path in paths]

    def exist(self, relatives: Sequence[str]) -> list[bool]:
        """Whether each file exists (for stores that cannot list: one request per file)."""

        def one(relative: str) -> bool:
            try:
                path = self.path(relative)
                if self.local:  # a name too long for the disk is simply not there
                    return os.path.isfile(path)
                return bool(self._retry(relative, lambda: self.fs.isfile(path)))
            except SourceError:
                return False

        return list(self._pool().map(one, relatives))

    # -- reading -------------------------------------------------------------------------

    def read(self, relative: str, max_bytes: int) -> bytes:
        """The bytes of one file; ``SourceError`` when it cannot be had."""
        (data,) = self.read_many([relative], max_bytes)
        if isinstance(data, SourceError):
            raise data
        return data

    def read_many(self, relatives: Sequence[str], max_bytes: int) -> list[bytes | SourceError]:
        """The bytes of each file, fetched concurrently; a file over ``max_bytes``, missing,
        or unreadable after the retries gives a ``SourceError`` in its place."""
        results: list[bytes | SourceError | None] = [None] * len(relatives)
        paths: dict[int, str] = {}
        for i, relative in enumerate(relatives):
            try:
                # A local read checks the file itself as it opens it (_read_local).
                paths[i] = self._joined(relative) if self.local else self.path(relative)
            except SourceError as exc:
                results[i] = exc
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            pending = sorted(paths)
            fetched = self._fetch([paths[i] for i in pending], max_bytes + 1)
            for i, data in zip(pending, fetched, strict=True):
                if _unsatisfiable_range(data):
                    # S3 answers a range request on an empty object with 416.
                    data = b""
                if isinstance(data, bytes | bytearray):
                    results[i] = _checked(relatives[i], bytes(data), max_bytes)
                elif isinstance(data, SourceError):  # refused as it was opened: final
                    results[i] = data
                elif isinstance(data, _PERMANENT) or attempt == self.retries:
                    log.warning("cannot read %s/%s: %s", self.url, relatives[i], redact(str(data)))
                    results[i] = _failure(repr(shown(relatives[i])), data)
                else:
                    continue
                del paths[i]
            if not paths:
                break
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        return [r if r is not None else SourceError("not read") for r in results]

    def _fetch(self, paths: list[str], limit: int) -> list[Any]:
        if not paths:
            return []
        if self.local:  # the page cache answers faster than any pool of threads
            return [self._read_local(path, limit) for path in paths]
        try:
            return list(
                self.fs.cat_ranges(
                    paths,
                    [0] * len(paths),
                    [limit] * len(paths),
                    on_error="return",
                    batch_size=self.concurrency,
                )
            )
        except Exception as exc:  # the whole call failed: every file shares the error
            return [exc] * len(paths)

    def _joined(self, relative: str) -> str:
        problem = refuse_relative(relative)
        if problem is not None:
            raise SourceError(problem)
        return f"{self.root}/{relative}"

    def _read_local(self, path: str, limit: int) -> bytes | Exception:
        """A file of a local store, if it is a regular file inside the root (a symlink is
        followed only when it stays inside; a FIFO, device or socket is refused before it
        can block a worker)."""
        relative = path[len(self.root) + 1 :]
        if not self._folder_inside(os.path.dirname(path)):
            return SourceError(f"{shown(relative)!r} leads out of the dataset")
        try:
            try:
                fd = os.open(path, _OPEN | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                if not self._inside(path):  # the file itself is a symlink
                    return SourceError(f"{shown(relative)!r} leads out of the dataset")
                fd = os.open(path, _OPEN)
            try:
                found = os.fstat(fd)
                if not stat.S_ISREG(found.st_mode):
                    return SourceError(f"{shown(relative)!r} is not a regular file")
                # One byte more than its size shows a file that grew past the limit; never
                # ask for all of ``limit`` (64 MiB by default), which read() would allocate.
                return _read_fd(fd, min(found.st_size + 1, limit))
            finally:
                os.close(fd)
        except OSError as exc:
            return exc

    def _retry(self, what: str, call: Any) -> Any:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return call()
            except SourceError:
                raise
            except Exception as exc:
                if isinstance(exc, _PERMANENT) or attempt == self.retries:
                    log.warning("cannot list %s (%s): %s", self.url, what, redact(str(exc)))
                    raise _failure(what, exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(16, thread_name_prefix="augstream-store")
        return self._threads


def _read_fd(fd: int, count: int) -> bytes:
    """Up to ``count`` bytes of an open file, fewer only at its end."""
    data = os.read(fd, count)
    if len(data) == count or not data:
        return data
    parts = [data]
    got = len(data)
    while got < count:
        more = os.read(fd, count - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _checked(relative: str, data: bytes, max_bytes: int) -> bytes | SourceError:
    if len(data) > max_bytes:
        return SourceError(f"{shown(relative)!r} is larger than the limit of {max_bytes} bytes")
    return data


def _unsatisfiable_range(error: Any) -> bool:
    return isinstance(error, OSError) and error.errno == errno.EINVAL and "range" in str(error)
