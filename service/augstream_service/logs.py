"""One log line per request, and a request id on every line logged while serving it.

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


def configure_logging(level: str) -> None:
    """Log to stderr, one event per line, each with the request id it belongs to."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_WithRequestId())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class RequestLog:
    """ASGI middleware: give each request an id, and log it when its response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
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
