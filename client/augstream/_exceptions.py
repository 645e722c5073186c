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
│   └── BusyError          429/503: too many streams; retry later
├── IncompatibleStreamError  another protocol version, or a resumed stream that differs
├── StreamClosedError      reading from a stream after close()
└── ConnectionLostError    the server stayed unreachable after every retry
```
"""

from __future__ import annotations

from augstream_protocol.errors import AugstreamError, ProtocolError, TruncatedError

__all__ = [
    "AugstreamError",
    "AuthenticationError",
    "BusyError",
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
    """The spec (or an argument built into it) was rejected; the message names the field."""


class NotFoundError(ServerError, LookupError):
    """The server has no dataset (or uploaded array) of that name."""


class TooLargeError(ServerError, ValueError):
    """An upload is larger than the server accepts (HTTP 413)."""


class BusyError(ServerError):
    """The server is at its stream limit; ``retry_after`` says when to try again (seconds)."""

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


class ConnectionLostError(AugstreamError):
    """The connection broke and could not be re-established within the retry budget."""
