"""HTTP plumbing shared by the client: error mapping (an error status, or a server that
cannot be reached) and the frame reader of one response."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from augstream_protocol.wire import PROTOCOL_VERSION, Frame, FrameDecoder

from ._exceptions import (
    AuthenticationError,
    BusyError,
    ConnectionError,
    InvalidSpecError,
    NotFoundError,
    ServerError,
    TooLargeError,
)
from ._invalid import invalid_spec

__all__ = ["error_from_response", "iter_frames", "reaching", "unreachable", "watch_version"]

log = logging.getLogger("augstream")

#: The headers by which every response names the server's version and protocol.
VERSION_HEADER = "augstream-version"
PROTOCOL_HEADER = "augstream-protocol"
#: Servers already warned about (base URL, version): once each per process.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()

#: What to do, by what went wrong.
_ADVICE = {
    "connection refused": "nothing listens there: start the server (augstream serve DIR "
    "--host 0.0.0.0 --port PORT on the machine with the images), or fix the host or port",
    "unknown host": "the name does not resolve from this machine: check its spelling, or "
    "use the server's address",
    "TLS": "the TLS handshake failed: an http:// server does not speak https://, and a "
    "certificate this machine does not trust needs SSL_CERT_FILE",
    "timeout": "no answer in time: check that a firewall lets the port through, or give the "
    "Client a longer timeout",
    "connection failed": "check that an augstream server runs there and is reachable",
}


def _cause(exc: BaseException) -> str:
    """What went wrong, in the words ``augstream.ConnectionError.reason`` uses."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return "TLS"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for words, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("SSL", "TLS"),
    ):
        if words in text:
            return reason
    return "connection failed"


def unreachable(exc: BaseException, where: str) -> ConnectionError:
    """``exc`` (an httpx transport error) as ``augstream.ConnectionError``, naming
    ``where`` (a URL, or a replica's address and the URL it was found through)."""
    reason = _cause(exc)
    detail = str(exc) or type(exc).__name__
    return ConnectionError(
        f"cannot reach the augstream server at {where} ({reason}: {detail}): {_ADVICE[reason]}",
        url=where,
        reason=reason,
    )


@contextlib.contextmanager
def reaching(where: str) -> Iterator[None]:
    """Requests made inside raise ``augstream.ConnectionError`` naming ``where`` when the
    server cannot be reached (the httpx error is its message, not a second traceback)."""
    try:
        yield
    except httpx.TransportError as exc:
        raise unreachable(exc, where) from None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)


def _sent(request: httpx.Request) -> Any:
    """The spec a request carried: its JSON body, or a preview's ``spec`` query."""
    try:
        if "spec" in request.url.params:
            return json.loads(request.url.params["spec"])
        return json.loads(request.content or b"null")
    except (ValueError, httpx.RequestNotRead):
        return None


def _invalid(response: httpx.Response, where: str) -> InvalidSpecError | None:
    """A 422 that lists the spec's errors (FastAPI's ``detail``), told as the client tells
    its own (``augstream._invalid``): the values come from the request sent."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    if not isinstance(detail, list) or not all(isinstance(d, dict) for d in detail):
        return None
    return invalid_spec(detail, _sent(response.request), f"caught by the server ({where})")


def error_from_response(response: httpx.Response) -> ServerError:
    """The exception that an error response stands for (its body must have been read)."""
    status = response.status_code
    # The query is left out: a preview's carries a whole spec, and the message names the field.
    url = response.request.url.copy_with(query=None)
    message = f"{_message(response)} (HTTP {status} from {url})"
    if status == 401:
        return AuthenticationError(message, status=status, kind="unauthorized")
    if status == 422:
        found = _invalid(response, f"HTTP {status} from {url}")
        return found or InvalidSpecError(message, status=status, kind="invalid_spec")
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


def _client_version() -> str:
    from . import __version__  # the package's, read when it was imported

    return __version__


def watch_version(response: httpx.Response) -> None:
    """An httpx response hook: warn once per server (on the ``augstream`` logger) when its
    version or protocol is not this client's, naming the pip command that installs the
    server's own client from the server (``/client/``)."""
    version = response.headers.get(VERSION_HEADER)
    protocol = response.headers.get(PROTOCOL_HEADER)
    mine = _client_version()
    if version is None or (version == mine and protocol in (None, str(PROTOCOL_VERSION))):
        return
    base = str(response.request.url.copy_with(path="/", query=None)).rstrip("/")
    with _warned_lock:
        if (base, version) in _warned:
            return
        _warned.add((base, version))
    what = f"augstream {version}" + (
        f" (protocol {protocol}, this client's is {PROTOCOL_VERSION}: streams will be refused)"
        if protocol not in (None, str(PROTOCOL_VERSION))
        else ""
    )
    wheel = f"{base}/client/augstream-{version.replace('-', '_')}-py3-none-any.whl"
    log.warning(
        "augstream: the server at %s runs %s, this client %s; install the server's own "
        'client: pip install "augstream[keras] @ %s"',
        base,
        what,
        mine,
        wheel,
    )


def iter_frames(response: httpx.Response, decoder: FrameDecoder) -> Iterator[Frame]:
    """Frames of a streaming response as they arrive; raises ``TruncatedError`` if the body
    stops inside a frame."""
    for chunk in response.iter_raw():
        yield from decoder.feed(chunk)
    decoder.close()
