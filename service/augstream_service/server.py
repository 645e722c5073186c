"""uvicorn's server, made to hand open streams over before it stops, and to close
connections that are slow to say what they want.

On SIGTERM/SIGINT (or ``stop()`` from a thread) uvicorn stops accepting connections and waits
for open responses; endless streams never finish by themselves, so each one is told to end
with a go-away frame naming the client's next batch, which the client resumes elsewhere.

uvicorn has no deadline for a request's line and headers (its keep-alive timer starts only
after a response and is reset by every byte received), so a connection that sends nothing,
or a request line a byte at a time, would be held open for ever: ``HeaderDeadline`` gives
each request ``header_timeout_s`` from when its connection opens or its previous response
ends, then answers 408 and closes. (Bodies have their pace: ``peers.BodyDeadline``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from .directbody import DirectBody, direct
from .peers import CONNECTION

__all__ = ["DrainingServer", "HeaderDeadline", "header_deadline", "server_config"]

#: ``Settings.header_timeout_s``' default, for apps built without augstream's settings.
HEADER_TIMEOUT_S = 10.0
_TOO_SLOW = b"the request line and headers came too slowly"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_SLOW), _TOO_SLOW)
)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 connection with a deadline on each request's line and headers."""

    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Writing pauses while any of h11's bytes are unsent, and resumes once all are: a
        # stream's next large piece then always finds the transport empty and goes straight
        # to the socket (directbody) rather than behind them, copied into its buffer.
        transport.set_write_buffer_limits(high=0)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete: its app runs
            self._disarm()
            self._started()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        # The next request's clock starts now, unless a pipelined one has already begun.
        if self.cycle is not cycle:
            self._started()
        elif not self.transport.is_closing():
            self._arm()

    def _started(self) -> None:
        # The app's task has not run yet: it finds the connection's unsent bytes in its
        # scope, by which a stream sees whether a slow client takes anything (peers), and
        # its large body pieces are written without h11's copy (directbody).
        cycle = self.cycle
        found: dict[object, object]
        if direct(cycle):
            # HTTP/1.0 bodies are not chunked: h11 (and its copy) writes them.
            whole = cycle.zero_copy() and cycle.scope.get("http_version") == "1.1"
            found = {"unsent": cycle.unsent, "whole": whole}
        else:
            found = {"unsent": self.transport.get_write_buffer_size, "whole": False}
        cycle.scope.setdefault("extensions", {})[CONNECTION] = found

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if isinstance(self.cycle, DirectBody):  # its unsent piece is written to no one
            self.cycle.forget()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closed a connection that sent no complete request headers in time")
            self.transport.write(_TIMED_OUT)
            self.transport.close()


def header_deadline(seconds: float) -> type[HeaderDeadline]:
    """``HeaderDeadline`` with a deadline of ``seconds`` (uvicorn builds one per connection)."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": seconds})


def server_config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    """The uvicorn settings every augstream server runs with."""
    state = getattr(app.state, "augstream", None)
    seconds = state.settings.header_timeout_s if state is not None else HEADER_TIMEOUT_S
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        # h11 (not httptools, were it installed): the header deadline is built on it.
        http=header_deadline(seconds),
        # The app logs each request itself, with its request id (logs.RequestLog).
        access_log=False,
        # Streams get this long to send their go-away frames before they are cut.
        timeout_graceful_shutdown=5,
    )


class DrainingServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose shutdown first asks the app's streams to go away."""

    def __init__(
        self, config: uvicorn.Config, on_exit: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(config)
        self._app = config.app
        #: Told of the signal that stops this server (``siblings.Siblings.signal``).
        self._on_exit = on_exit

    def drain(self) -> None:
        """Tell open streams to send go-away frames (what a stop does first)."""
        state = getattr(getattr(self._app, "state", None), "augstream", None)
        if state is not None:
            state.draining = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain()
        if self._on_exit is not None:
            self._on_exit(sig)
        super().handle_exit(sig, frame)
