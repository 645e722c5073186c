"""A stream's large body pieces written to the connection's socket without a copy.

uvicorn hands each body message to h11, which frames it as a chunk and joins the chunk
header, the data and the trailing CRLF into new bytes; asyncio's transport then sends what
the socket takes and copies the rest into its buffer, deleting each sent part from the
buffer's front (a memmove of the rest per partial send). Every byte a stream sends was
copied two or three times in the event loop, under the GIL: the largest part of what the
server process holds the GIL for per image once worker processes make the batches.

``DirectBody`` writes such a piece's framing and the piece itself (a view of the batch's
array) with ``os.writev`` straight to the socket: the kernel copies what it takes (without
the GIL), and the rest stays a view, written as the socket drains. It behaves as the
transport's buffer does for the app: a send waits first while earlier bytes are unsent (as
uvicorn's waits while the transport is paused), then hands its whole message over and
returns, so a send that a deadline cancels has written nothing; ``unsent()`` counts the
bytes of both. While a piece is unsent nothing else is written to the connection (every
other send waits for it), so the bytes keep their order.

It takes over only where h11 would write exactly these bytes: a response already started,
framed with chunked encoding, a body message of at least ``DIRECT_MIN`` bytes with more to
come, not a HEAD request, the transport's own buffer empty. Everything else (headers, small
or last messages, HTTP/1.0's close-delimited bodies) goes through uvicorn and h11 as before;
a piece's trailing CRLF is written with the next chunk's header (or before anything h11
writes next), so each piece costs one system call while the socket has room.

Waiting for room uses the event loop's writer callbacks on a duplicate of the socket's file
descriptor (asyncio refuses them on the descriptor a transport owns); the duplicate lives
only while a piece waits, and is closed when the connection is lost, so a peer that stops
reading keeps no socket open past its connection.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, TypeGuard

from h11._writers import ChunkedWriter
from uvicorn.protocols.http.h11_impl import RequestResponseCycle

from .peers import PARTS

__all__ = ["DIRECT_MIN", "DirectBody", "direct"]

#: Body messages at least this large skip h11's join (smaller ones cost less to copy than
#: a second write).
DIRECT_MIN = 64 << 10
#: The most buffers one ``writev`` takes (POSIX guarantees 16; Linux takes 1,024).
_IOV_MAX = 16
#: Whether this platform can write a piece without a copy (Windows has no ``writev``).
AVAILABLE = hasattr(os, "writev")


class DirectBody(RequestResponseCycle):
    """uvicorn's h11 request/response cycle, writing large chunked pieces itself."""

    #: A piece's CRLF is still to be written (before the next chunk header or h11's bytes).
    _crlf_owed = False
    #: What the socket has not taken yet of the last piece written directly (views).
    _owed: list[memoryview] | None = None
    #: The duplicate descriptor a waiting piece's writer callback watches, and the future
    #: a send waits on while a piece is unsent.
    _watched = -1
    _written: asyncio.Future[None] | None = None

    def zero_copy(self) -> bool:
        """Whether this connection's large pieces go to its socket without a copy (not on
        TLS, whose transport encrypts what it writes), so a stream needs not cut them."""
        return AVAILABLE and self.transport.get_extra_info("ssl_object") is None

    def unsent(self) -> int:
        """Bytes handed to this connection that its socket has not taken yet."""
        owed = sum(view.nbytes for view in self._owed) if self._owed else 0
        return self.transport.get_write_buffer_size() + owed

    async def send(self, message: Any) -> None:
        # Whatever this send writes goes after the piece still being written.
        if self._written is not None:
            await asyncio.shield(self._written)
        parts = message.get(PARTS)
        if parts is not None:
            views = [memoryview(part).cast("B") for part in parts]
        else:
            body = message.get("body", b"")
            views = [memoryview(body).cast("B")] if len(body) >= DIRECT_MIN else []
        if not (
            views
            and message["type"] == "http.response.body"
            and message.get("more_body", False)
            and self.response_started
            and not self.response_complete
            and self.scope["method"] != "HEAD"
            # h11's writer for this response (chunked encoding, not HTTP/1.0's or a length)
            and type(self.conn._writer) is ChunkedWriter
        ):
            if parts is not None:  # each part as a message of its own, as h11 takes them
                for part in parts:
                    await self.send({"type": message["type"], "body": part, "more_body": True})
                return
            self._settle()
            await super().send(message)
            return
        # What uvicorn's send does first: wait while the connection's buffer drains.
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        size = sum(view.nbytes for view in views)
        head = b"%s%x\r\n" % (b"\r\n" * self._crlf_owed, size)
        self._crlf_owed = True
        if self.transport.get_write_buffer_size() or not self.zero_copy():
            # h11's bytes still wait in the transport (these go behind them, through it),
            # or TLS encrypts what the transport writes.
            self.transport.write(head)
            self.transport.writelines(views)
            return
        self._write([memoryview(head), *views])

    def _settle(self) -> None:
        if self._crlf_owed:
            self._crlf_owed = False
            if not self.disconnected:
                self.transport.write(b"\r\n")

    def _write(self, views: list[memoryview]) -> None:
        """Write ``views`` to the socket now, what it does not take as it drains."""
        fd = self.transport.get_extra_info("socket").fileno()
        self._owed = self._written_from(fd, views)
        if not self._owed:
            return
        loop = asyncio.get_running_loop()
        self._written = loop.create_future()
        self._watched = os.dup(fd)
        loop.add_writer(self._watched, self._drained)

    def _written_from(self, fd: int, views: list[memoryview]) -> list[memoryview] | None:
        """Write ``views`` to ``fd`` until the socket is full: what is left, or None if the
        connection is broken (it is then closed, as the transport would close it)."""
        while views:
            try:
                n = os.writev(fd, views[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                return views
            except OSError:
                self.transport.abort()
                return None
            while n and n >= views[0].nbytes:
                n -= views.pop(0).nbytes
            if n:
                views[0] = views[0][n:]
        return views

    def _drained(self) -> None:
        """The socket has room: write more of the piece; once it is all written, let the
        next send go."""
        assert self._owed is not None
        self._owed = self._written_from(self._watched, self._owed)
        if not self._owed:
            self.forget()

    def forget(self) -> None:
        """Stop writing the unsent piece (it is all written, or the connection is lost)."""
        if self._watched >= 0:
            asyncio.get_running_loop().remove_writer(self._watched)
            os.close(self._watched)
            self._watched = -1
        self._owed = None
        written, self._written = self._written, None
        if written is not None and not written.done():
            written.set_result(None)


def direct(cycle: object) -> TypeGuard[DirectBody]:
    """Make uvicorn's new ``cycle`` a ``DirectBody`` (before its app has run): only an
    instance of uvicorn's own class, which ``DirectBody`` extends without new state that
    its instance needs set up. Whether it now is one."""
    if type(cycle) is RequestResponseCycle:
        cycle.__class__ = DirectBody
    return isinstance(cycle, DirectBody)
