"""augstream's exceptions (the root and the protocol's own come from ``augstream_protocol.errors``).

```
AugstreamError
├── ProtocolError          bytes that are not a valid v1 frame stream (bad kind, CRC, size)
│   └── TruncatedError     the stream ended inside a frame or without its end frame
├── ServerError            the server said no (an HTTP error status or an in-band error frame)
│   ├── AuthenticationError  401: a missing or wrong API key
│   ├── InvalidSpecError   422: a field of the spec is wrong (also a ValueError)
│   ├── NotFoundError      404: unknown dataset or uploaded array (also a LookupError)
│   ├── TooLargeError      413: an upload over the server's limit (also a ValueError)
│   └── BusyError          429/503: at a cap (streams, uploads, fits, previews), still
│                          after the retry policy's attempts
├── IncompatibleStreamError  another protocol version, or a resumed stream that differs
├── StreamClosedError      reading from a stream after close()
└── ConnectionError        the server cannot be reached: refused, unknown host, TLS, timeout
    │                      (also the built-in ConnectionError); names the URL and what to do
    └── ConnectionLostError  it stayed unreachable after every retry (a stream's end)
```

``InvalidSpecError`` is raised the same way whoever caught the value, the client before any
request or the server: the field, the value, what is allowed, where it was caught, and a
"did you mean" for a misspelled name or choice (``augstream._invalid``).
"""

from __future__ import annotations

import builtins

from augstream_protocol.errors import AugstreamError, ProtocolError, TruncatedError

__all__ = [
    "AugstreamError",
    "AuthenticationError",
    "BusyError",
    "ConnectionError",
    "ConnectionLostError",
    "IncompatibleStreamError",
    "InvalidSpecError",
    "NotFoundError",
    "ProtocolError",
    "ServerError",
    "StreamClosedError",
    "TooLargeError",
    "TruncatedError",
]


class ServerError(AugstreamError):
    """The server refused a request or reported a failure in the stream."""

    def __init__(self, message: str, *, status: int = 500, kind: str = "server_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


class AuthenticationError(ServerError):
    """The server needs an API key and got none, or a wrong one (HTTP 401)."""


class InvalidSpecError(ServerError, ValueError):
    """The spec (or an argument built into it) was rejected; the message names the field,
    the value, what is allowed and who caught it. ``fields`` are the fields named,
    ``caught_by`` is ``"client"`` or ``"server"``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        kind: str = "invalid_spec",
        fields: tuple[str, ...] = (),
        caught_by: str = "server",
    ) -> None:
        super().__init__(message, status=status, kind=kind)
        self.fields = fields
        self.caught_by = caught_by


class NotFoundError(ServerError, LookupError):
    """The server has no dataset (or uploaded array) of that name."""


class TooLargeError(ServerError, ValueError):
    """An upload is larger than the server accepts (HTTP 413)."""


class BusyError(ServerError):
    """The server is at a cap (streams, uploads, fits, previews, or its memory budget) and
    stayed there through the retry policy's attempts; ``retry_after`` says when to try
    again (seconds)."""

    def __init__(
        self, message: str, *, status: int = 503, kind: str = "busy", retry_after: float = 1.0
    ) -> None:
        super().__init__(message, status=status, kind=kind)
        self.retry_after = retry_after


class IncompatibleStreamError(AugstreamError):
    """The server speaks another protocol version, or a reconnect found a different stream
    (the dataset changed, or another replica holds other data): resuming would not be exact."""


class StreamClosedError(AugstreamError):
    """The stream was closed; it yields no more batches."""


class ConnectionError(AugstreamError, builtins.ConnectionError):
    """The server could not be reached. The message names the URL (and, for a replica found
    by resolving a name, the address tried), what went wrong (``reason``: ``"connection
    refused"``, ``"unknown host"``, ``"TLS"``, ``"timeout"`` or ``"connection failed"``) and
    what to do. Also the built-in ``ConnectionError`` (an ``OSError``)."""

    def __init__(self, message: str, *, url: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConnectionLostError(ConnectionError):
    """A stream's servers stayed unreachable through every retry: the stream ends."""
