"""One HTTP response of a stream: open it, check its header, map its failures.

``connect`` opens a stream and retries what may pass (a refused or broken connection, bytes
that are not frames, a busy server, a server going away), as ``RetryPolicy`` says.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from augstream_protocol.info import StreamHeader
from augstream_protocol.numerics import differing
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION, Frame, FrameKind

from ._body import response_frames
from ._exceptions import (
    BusyError,
    ConnectionLostError,
    IncompatibleStreamError,
    ProtocolError,
    ServerError,
)
from ._http import error_from_response, unreachable

__all__ = [
    "RETRYABLE",
    "Connection",
    "GoAwayError",
    "NumericsDifferError",
    "RetryPolicy",
    "check_same_stream",
    "connect",
    "server_error",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on a broken stream: capped exponential backoff.

    ``attempts`` counts consecutive failures without a batch delivered in between.
    """

    attempts: int = 6
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0

    def delay(self, failures: int, cause: BaseException | None = None) -> float:
        """Seconds to wait before retry number ``failures`` (1-based); at least the server's
        ``Retry-After`` when ``cause`` is a busy answer."""
        delay = float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))
        return max(delay, cause.retry_after) if isinstance(cause, BusyError) else delay


class GoAwayError(Exception):
    """The server is stopping and handed the stream over: resume at the next batch."""


# Reasons to reconnect: the transport broke, the bytes that arrived are unusable, the server
# was busy, or it is going away.
RETRYABLE = (httpx.TransportError, ProtocolError, BusyError, GoAwayError)


class NumericsDifferError(IncompatibleStreamError):
    """A replica's numerics fingerprint differs from the stream's for families it uses: its
    bytes could differ, so it is left out of the stream (not a failure of the stream)."""


class Connection:
    """One HTTP response of a stream and its frame iterator."""

    def __init__(
        self,
        http: httpx.Client,
        spec: StreamSpec,
        headers: dict[str, str],
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self._stack = ExitStack()
        try:
            self.response = self._stack.enter_context(
                http.stream(
                    "POST",
                    "/v1/stream",
                    json=spec.request_body(),
                    headers=headers,
                    extensions=extensions or {},
                )
            )
            if self.response.status_code != 200:
                self.response.read()
                raise error_from_response(self.response)
            self.frames = response_frames(self.response, DEFAULT_MAX_FRAME_BYTES)
            self.header = read_header(next(self.frames, None))
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def interrupt(self) -> None:
        """Wake a read blocked on this connection from another thread.

        Closing a socket does not wake a ``recv`` in progress; shutting it down does.
        """
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def read_header(first: Frame | None) -> StreamHeader:
    if first is None or first.kind != FrameKind.HEADER:
        raise ProtocolError("the stream did not start with a header frame")
    payload = first.json()
    if payload.get("protocol") != PROTOCOL_VERSION:
        raise IncompatibleStreamError(
            f"the server speaks protocol {payload.get('protocol')!r}; "
            f"this client speaks {PROTOCOL_VERSION}"
        )
    return StreamHeader.model_validate(payload)


def connect(
    candidates: Sequence[tuple[httpx.Client, dict[str, Any]]],
    spec: StreamSpec,
    headers: dict[str, str],
    retry: RetryPolicy,
    where: Sequence[str] = (),
) -> tuple[int, Connection]:
    """Open a stream on the first candidate (an HTTP client and its request extensions),
    retrying transient failures on the next ones in turn; which one answered, and how.
    ``where`` names each candidate in the error when none answers (default: its URL)."""
    failures = 0
    started = time.monotonic()
    while True:
        index = failures % len(candidates)
        http, extensions = candidates[index]
        try:
            return index, Connection(http, spec, headers, extensions)
        except RETRYABLE as exc:
            failures += 1
            if failures > retry.attempts:
                name = where[index] if index < len(where) else str(http.base_url).rstrip("/")
                tried = f"after {retry.attempts} retries over {time.monotonic() - started:.1f} s"
                if isinstance(exc, httpx.TransportError):
                    cause = unreachable(exc, name)
                    raise ConnectionLostError(
                        f"could not start the stream: {cause} ({tried})",
                        url=name,
                        reason=cause.reason,
                    ) from None
                raise ConnectionLostError(
                    f"could not start the stream at {name} {tried}; last error: {exc}",
                    url=name,
                ) from None
            time.sleep(retry.delay(failures, exc))


#: Spec fields that say which part of the stream a connection carries, not which stream.
_PLACEMENT = {"start", "stride", "batches"}


def check_same_stream(first: StreamHeader, connection: Connection) -> None:
    """Refuse to resume on a stream that is not the one we started (listing or spec changed),
    or on a replica whose numerics differ for the families the stream uses."""
    again = connection.header
    same = (
        again.dataset_samples == first.dataset_samples
        and again.samples == first.samples
        and again.batches_per_epoch == first.batches_per_epoch
        and again.class_indices == first.class_indices
        and again.arrays == first.arrays
        and again.spec.model_dump(exclude=_PLACEMENT) == first.spec.model_dump(exclude=_PLACEMENT)
    )
    if not same:
        connection.close()
        raise IncompatibleStreamError(
            "the resumed stream differs from the one started (the dataset changed on the "
            "server, or another server holds different data); resuming would not be exact"
        )
    differ = differing(first.numerics, again.numerics, sorted(first.numerics))
    if differ:
        connection.close()
        raise NumericsDifferError(
            f"its numerics differ from the stream's for {', '.join(differ)}: its batches "
            "could differ in rare pixels"
        )


def server_error(frame: Frame) -> ServerError:
    error = frame.json().get("error", {})
    return ServerError(
        f"the server stopped the stream: {error.get('message', 'no message')}",
        status=500,
        kind=str(error.get("kind", "server_error")),
    )
