"""HTTP plumbing shared by the client: error mapping and the frame reader of one response."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from augstream_protocol.wire import Frame, FrameDecoder

from ._exceptions import (
    AuthenticationError,
    BusyError,
    InvalidSpecError,
    NotFoundError,
    ServerError,
    TooLargeError,
)

__all__ = ["error_from_response", "iter_frames"]


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)


def error_from_response(response: httpx.Response) -> ServerError:
    """The exception that an error response stands for (its body must have been read)."""
    status = response.status_code
    # The query is left out: a preview's carries a whole spec, and the message names the field.
    url = response.request.url.copy_with(query=None)
    message = f"{_message(response)} (HTTP {status} from {url})"
    if status == 401:
        return AuthenticationError(message, status=status, kind="unauthorized")
    if status == 422:
        return InvalidSpecError(message, status=status, kind="invalid_spec")
    if status == 404:
        return NotFoundError(message, status=status, kind="not_found")
    if status == 413:
        return TooLargeError(message, status=status, kind="too_large")
    if status in (429, 503):
        try:
            retry_after = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            retry_after = 1.0
        return BusyError(message, status=status, retry_after=retry_after)
    return ServerError(message, status=status)


def iter_frames(response: httpx.Response, decoder: FrameDecoder) -> Iterator[Frame]:
    """Frames of a streaming response as they arrive; raises ``TruncatedError`` if the body
    stops inside a frame."""
    for chunk in response.iter_raw():
        yield from decoder.feed(chunk)
    decoder.close()
