"""A stream's large body pieces written to the connection without h11's copy.

uvicorn hands each body message to h11, which frames it as a chunk and joins the chunk
header, the data and the trailing CRLF into new bytes: a copy of every byte a stream sends,
made in the event loop under the GIL (~0.4 ms per 4.8 MB batch, the largest single part
of what the server process holds the GIL for per image once worker processes make the
batches). ``DirectBody`` writes such a piece's framing and the piece itself (a view of the
batch's array) to the transport side by side: the same bytes on the wire, one copy fewer.

It takes over only where h11 would write exactly these bytes: a response already started,
framed with chunked encoding, a body message of at least ``DIRECT_MIN`` bytes with more to
come, not a HEAD request. Everything else (headers, small or last messages, HTTP/1.0's
close-delimited bodies) goes through uvicorn and h11 as before; a piece's trailing CRLF is
written with the next chunk's header (or before anything h11 writes next), so each piece
costs two writes, not three.
"""

from __future__ import annotations

from typing import Any

from h11._writers import ChunkedWriter
from uvicorn.protocols.http.h11_impl import RequestResponseCycle

__all__ = ["DIRECT_MIN", "DirectBody", "direct"]

#: Body messages at least this large skip h11's join (smaller ones cost less to copy than
#: a second write).
DIRECT_MIN = 64 << 10


class DirectBody(RequestResponseCycle):
    """uvicorn's h11 request/response cycle, writing large chunked pieces itself."""

    #: A piece's CRLF is still to be written (before the next chunk header or h11's bytes).
    _crlf_owed = False

    async def send(self, message: Any) -> None:
        body = message.get("body", b"")
        if not (
            message["type"] == "http.response.body"
            and message.get("more_body", False)
            and len(body) >= DIRECT_MIN
            and self.response_started
            and not self.response_complete
            and self.scope["method"] != "HEAD"
            # h11's writer for this response (chunked encoding, not HTTP/1.0's or a length)
            and type(self.conn._writer) is ChunkedWriter
        ):
            self._settle()
            await super().send(message)
            return
        # What uvicorn's send does first: wait while the connection's buffer drains.
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        self.transport.write(b"%s%x\r\n" % (b"\r\n" * self._crlf_owed, len(body)))
        self.transport.write(body)
        self._crlf_owed = True

    def _settle(self) -> None:
        if self._crlf_owed:
            self._crlf_owed = False
            if not self.disconnected:
                self.transport.write(b"\r\n")


def direct(cycle: object) -> None:
    """Make uvicorn's new ``cycle`` a ``DirectBody`` (before its app has run): only an
    instance of uvicorn's own class, which ``DirectBody`` extends without new state."""
    if type(cycle) is RequestResponseCycle:
        cycle.__class__ = DirectBody
