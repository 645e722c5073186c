"""A stream response's body, read from its socket straight into frame buffers.

httpx hands a body over in 64 KiB pieces that its HTTP parser (h11) has copied twice, and
the frame decoder copies each piece once more: for a 4.8 MB batch that is ~13 ms of client
CPU, several times what the bytes' trip through the kernel costs. A stream's body is read
here instead: HTTP/1.1 framing (chunked, a length, or until the connection closes) decoded
by hand and each frame body received with ``recv_into`` into the buffer its arrays then
live in, checked once (CRC-32).

This reaches into httpx's transport (httpcore 1.0 over h11) for the connection's socket and
the bytes its parser had already received. Where those internals are not what this expects
(another httpx, HTTP/2, TLS inside a TLS proxy) the body is read through httpx as before:
the same frames, more CPU. The connection is never reused afterwards (httpcore closes a
connection whose response it did not read to the end).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx

from augstream_protocol.wire import PREFIX_SIZE, Frame, FrameDecoder, check_crc, frame_start

from ._exceptions import ProtocolError, TruncatedError
from ._http import iter_frames

__all__ = ["SocketBody", "response_frames", "socket_frames"]

#: A chunk-size line longer than this is not HTTP/1.1 any client should accept.
_MAX_LINE = 4096
#: Bytes asked for when reading chunk-size lines: the line, and a little of the chunk.
_LINE_READ = 1024


class SocketBody:
    """The body of one HTTP/1.1 response: ``leading`` (what the parser had already
    received), then ``sock``. Framing: ``chunked``, else ``length`` bytes, else until the
    connection closes. Socket errors are raised as httpx's (``ReadTimeout``, ``ReadError``),
    so callers handle them as they handle httpx's own reads."""

    def __init__(
        self, sock: socket.socket, leading: bytes, *, chunked: bool, length: int | None
    ) -> None:
        self._sock = sock
        self._pending = memoryview(leading)
        self._chunked = chunked
        #: Bytes left in the current chunk (chunked) or the body (a length); -1: until close.
        self._left = 0 if chunked else (-1 if length is None else length)
        self._first_chunk = True
        self._done = not chunked and length == 0

    def readinto(self, view: memoryview) -> int:
        """Receive up to ``len(view)`` body bytes into ``view``; 0 once the body is over."""
        if self._done or not len(view):
            return 0
        if self._chunked and self._left == 0:
            self._next_chunk()
            if self._done:
                return 0
        want = len(view) if self._left < 0 else min(len(view), self._left)
        if len(self._pending):
            got = min(want, len(self._pending))
            view[:got] = self._pending[:got]
            self._pending = self._pending[got:]
        else:
            got = self._recv_into(view[:want])
            if not got:
                if self._left < 0:  # a body that ends with the connection
                    self._done = True
                    return 0
                raise TruncatedError("the connection closed inside the response body")
        if self._left > 0:
            self._left -= got
            self._done = not self._chunked and self._left == 0
        return got

    def _recv_into(self, view: memoryview) -> int:
        try:
            return self._sock.recv_into(view)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no stream bytes arrived in time: {exc}") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the stream failed: {exc}") from exc

    def _line(self) -> bytes:
        """The next CRLF-terminated line (without it), from what is pending and the socket."""
        data = bytearray(self._pending)
        self._pending = memoryview(b"")
        while (end := data.find(b"\r\n")) < 0:
            if len(data) > _MAX_LINE:
                raise ProtocolError("a chunk-size line of the stream's body is too long")
            more = bytearray(_LINE_READ)
            got = self._recv_into(memoryview(more))
            if not got:
                raise TruncatedError("the connection closed inside the response body")
            data += more[:got]
        self._pending = memoryview(bytes(data[end + 2 :]))
        return bytes(data[:end])

    def _next_chunk(self) -> None:
        if not self._first_chunk and self._line():
            raise ProtocolError("a chunk of the stream's body is longer than its size said")
        self._first_chunk = False
        line = self._line()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ProtocolError(f"bad chunk-size line in the stream's body: {line[:40]!r}")
        if size == 0:
            while self._line():  # trailer fields, up to the empty line
                pass
            self._done = True
        self._left = size


def _fill(body: SocketBody, view: memoryview) -> int:
    """Fill ``view`` from ``body``; how many bytes it got (fewer only at the body's end)."""
    filled = 0
    while filled < len(view):
        got = body.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def socket_frames(body: SocketBody, max_frame_bytes: int) -> Iterator[Frame]:
    """The frames of ``body``, each received into its own buffer (a ``bytearray``, so the
    arrays decoded from it are writable). Ends where the body ends between two frames;
    raises ``TruncatedError`` if it ends inside one."""
    prefix = bytearray(PREFIX_SIZE)
    while True:
        got = _fill(body, memoryview(prefix))
        if not got:
            return
        if got < PREFIX_SIZE:
            raise TruncatedError(f"stream ended inside a frame ({got} bytes of it received)")
        kind, length, crc = frame_start(prefix, max_frame_bytes)
        data = bytearray(length)
        got = _fill(body, memoryview(data))
        if got < length:
            raise TruncatedError(
                f"stream ended inside a frame ({PREFIX_SIZE + got} bytes of it received)"
            )
        check_crc(kind, data, crc)
        yield Frame(kind, data)


def response_frames(response: httpx.Response, max_frame_bytes: int) -> Iterator[Frame]:
    """The frames of a streaming response whose headers have arrived (body unread): from
    its socket where httpx's internals allow, else through httpx."""
    body = _socket_body(response)
    if body is None:
        return iter_frames(response, FrameDecoder(max_frame_bytes))
    return socket_frames(body, max_frame_bytes)


def _socket_body(response: httpx.Response) -> SocketBody | None:
    """The response's body as a ``SocketBody``, or None where httpx's internals differ."""
    if response.http_version != "HTTP/1.1":
        return None
    stream = response.extensions.get("network_stream")
    try:
        from httpcore._backends.sync import SyncStream

        # httpx's response stream -> httpcore's pool stream -> its HTTP/1.1 connection's
        # h11 state, which holds the body bytes that came with the headers.
        outer: Any = response.stream
        connection = outer._stream._httpcore_stream._stream._connection
        leading, _ = connection._h11_state.trailing_data
    except (ImportError, AttributeError):
        return None
    # Exactly a socket stream (not TLS inside TLS, whose socket carries the outer layer).
    if type(stream) is not SyncStream or not isinstance(leading, bytes):
        return None
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket):
        return None
    encoding = response.headers.get("transfer-encoding", "").lower()
    length = response.headers.get("content-length")
    chunked = encoding.rsplit(",", 1)[-1].strip() == "chunked"
    if not chunked and encoding:
        return None  # another transfer coding: httpx's problem
    try:
        size = None if chunked or length is None else int(length)
    except ValueError:
        return None
    timeout = response.request.extensions.get("timeout", {}).get("read")
    sock.settimeout(timeout)
    return SocketBody(sock, leading, chunked=chunked, length=size)
