"""One log line per request, and a request id on every line logged while serving it.

Every response also names the server's version and protocol (``Augstream-Version``,
``Augstream-Protocol``): a client of another version warns once and says how to install
the server's own.

The id comes from the caller's ``X-Request-ID`` (when it is a short plain token) or is made
here, and is sent back in the response's ``X-Request-ID``: a user who quotes it lets the
operator find every line of that request. Lines carry the path, never the query string or
headers (keys travel in headers), and the caller as its key's number, never the key.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from augstream_protocol.wire import PROTOCOL_VERSION

from . import __version__
from .peers import body_size

__all__ = ["REQUEST_ID", "RequestLog", "configure_logging"]

#: The id of the request being served in this context ("-" outside any request).
REQUEST_ID: ContextVar[str] = ContextVar("augstream_request_id", default="-")
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

log = logging.getLogger("augstream.request")


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _ClientGone(logging.Filter):
    """asyncio's "socket.send() raised exception." as a debug line, not a warning.

    asyncio says it when a transport is written to five times after its connection was lost
    (``LOG_THRESHOLD_FOR_CONNLOST_WRITES``): a client that exits (a trainer done, or
    killed) resets its connections, and writes already on their way (pieces of frames
    handed to uvicorn in the same turn of the loop, before it runs ``connection_lost``) go
    nowhere. Nothing is wrong with the server: the stream's slot and producer are freed as
    on any disconnect.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.getMessage().startswith(
            "socket.send() raised exception"
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str) -> None:
    """Log to stderr, one event per line, each with the request id it belongs to."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_WithRequestId())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _ClientGone) for f in asyncio_log.filters):
        asyncio_log.addFilter(_ClientGone())


class RequestLog:
    """ASGI middleware: give each request an id, and log it when its response is done."""

    def __init__(self, app: ASGIApp, version: str = __version__) -> None:
        self.app = app
        # Clients compare them with their own, and warn once when they differ.
        self._identity = [
            (b"augstream-version", version.encode()),
            (b"augstream-protocol", str(PROTOCOL_VERSION).encode()),
        ]

    def _stamp(self, request_id: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", request_id.encode()), *self._identity]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = given.decode() if _ACCEPTED_ID.fullmatch(given) else secrets.token_hex(6)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status, sent = 500, 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *self._stamp(request_id)]
            elif message["type"] == "http.response.body":
                sent += body_size(message)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            owner = scope.get("state", {}).get("owner", "-")
            log.info(
                "%s %s %d bytes=%d ms=%.1f caller=%s",
                scope["method"],
                scope["path"],
                status,
                sent,
                (time.perf_counter() - started) * 1000,
                owner,
            )
            REQUEST_ID.reset(token)
