"""Run a stream: produce batches ahead of the client on the app's pool, send them in order.

At most ``prefetch`` batches of one stream are in flight or waiting, so a slow client
never makes the server buffer more; when the client goes away the pending work is
cancelled and the stream's slot is released.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, Future
from typing import cast

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from augstream_protocol.wire import FrameKind, encode_json_frame

from .admission import Slots
from .memory import BatchWindow
from .peers import CONNECTION, PARTS, Pace, SlowPeerError, paced_send
from .pipeline import EncodedBatch, SampleError, StreamPlan
from .sampling import positions

__all__ = ["FrameStreamResponse", "StreamSlots", "piece_size", "stream_frames"]

log = logging.getLogger("augstream.stream")

#: Bytes per second below which a reader falls behind (``Settings.min_read_rate``' default:
#: far below any real network).
MIN_READ_RATE = 16 << 10
#: Largest piece of a batch handed to the server at once, for a remote client and for one on
#: this machine. Each piece costs a pass through the ASGI send chain and h11 (~0.1 ms of the
#: event loop, under the GIL), so a reader that keeps up gets more bytes per second with
#: larger pieces (loopback: ~1,100-1,500 MB/s with 256 KiB, ~1,250-1,600 with 1 MiB) and
#: the event loop holds the GIL less (a 224x224 batch of 32 in one or two sends of 4 MiB
#: rather than five of 1 MiB). But Python 3.11's asyncio transport keeps a piece's unsent
#: bytes in one bytearray and deletes each sent part from its front, so for a reader held
#: back by its network a piece costs a memmove of its rest per socket send, quadratic in its
#: size (at 100 MB/s: 0.9 ms of server CPU per MB with 256 KiB pieces, 1.45 with 1 MiB). A
#: client on the same machine reads each frame in a burst (or not at all while its queue is
#: full).
#: Memoryview slices: no copy.
SEND_PIECE = 256 << 10
LOOPBACK_PIECE = 1 << 20
#: A piece as large as any part: not cut (``directbody`` writes it from its own memory),
#: and a batch frame's parts sent as one message (``peers.PARTS``).
WHOLE = 1 << 62
Chunk = bytes | memoryview
#: A batch frame: its parts, written in order.
Frame = tuple[Chunk, ...]
_MEDIA_TYPE = "application/vnd.augstream.v1"


def _never() -> bool:
    return False


def _ignore(*_: object) -> None:
    return None


class StreamSlots(Slots):
    """Counts live streams against the server's limit and each owner's; a stream over a
    cap is refused at once (its client retries)."""

    def refusal(self, owner: str) -> tuple[int, str] | None:
        """Why ``owner`` cannot start a stream now, as (HTTP status, message), or None."""
        if self.per_owner is not None and self.by_owner[owner] >= self.per_owner:
            return 429, (
                f"this key (or address) already runs {self.per_owner} streams, the most one "
                "may run at once; retry when one ends"
            )
        if self.active >= self.limit:
            return 503, f"this server already runs {self.limit} streams, its limit; retry later"
        return None


class FrameStreamResponse(StreamingResponse):
    """A streaming response that always runs ``on_close`` and closes its frame generator,
    even when the client disconnects before the first frame is sent, and that gives up on a
    client that reads slower than ``min_read_rate`` bytes/s for about ``send_timeout_s``, or
    stops for ``send_timeout_s`` (``peers.Pace``; its slot is freed, and it resumes at its
    next batch as after any lost connection)."""

    # Frames too, not only Starlette's chunks: ``stream_response`` sends them.
    body_iterator: AsyncIterator[Chunk | Frame]  # type: ignore[assignment]

    def __init__(
        self,
        frames: AsyncIterator[Chunk | Frame],
        on_close: Callable[[], None],
        send_timeout_s: float | None = None,
        on_evict: Callable[[], None] = _ignore,
        min_read_rate: float = MIN_READ_RATE,
    ) -> None:
        super().__init__(cast(AsyncIterator[Chunk], frames), media_type=_MEDIA_TYPE)
        self._frames = frames
        self._on_close = on_close
        self._send_timeout_s = send_timeout_s
        self._on_evict = on_evict
        self._min_read_rate = min_read_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = scope.get("extensions", {}).get(CONNECTION, {})
        # A connection that writes large pieces without a copy takes each batch frame whole,
        # as one message of its parts: one pass through the send chain per batch, and the
        # event loop turns while the socket drains it (directbody).
        size = WHOLE if connection.get("whole") else piece_size(scope.get("client"))
        pieces = _pieces(self._frames, size)
        self.body_iterator = pieces
        timeout = self._send_timeout_s
        if timeout is not None:
            unsent = connection.get("unsent")
            send = paced_send(send, Pace(self._min_read_rate, timeout), unsent)
        try:
            await super().__call__(scope, receive, send)
        except SlowPeerError:
            log.warning(
                "evicted a client that read slower than %.0f bytes/s for %.0f s",
                self._min_read_rate,
                timeout,
            )
            self._on_evict()
        finally:
            try:
                await pieces.aclose()
                aclose = getattr(self._frames, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                self._on_close()

    async def stream_response(self, send: Send) -> None:
        # Starlette's, but a batch frame (its parts) goes as one message of ``PARTS``.
        status, headers = self.status_code, self.raw_headers
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async for piece in self.body_iterator:
            if isinstance(piece, tuple):
                await send({"type": "http.response.body", "body": b"", PARTS: piece,
                            "more_body": True})  # fmt: skip
            else:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def piece_size(client: tuple[str, int] | None) -> int:
    """Bytes per send for a client at this address: larger on this machine (loopback)."""
    try:
        address = ipaddress.ip_address(client[0]) if client else None
    except ValueError:  # a Unix socket's path, or no address at all
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return LOOPBACK_PIECE if address is not None and address.is_loopback else SEND_PIECE


async def _pieces(
    frames: AsyncIterator[Chunk | Frame], size: int
) -> AsyncGenerator[Chunk | Frame, None]:
    """``frames``' chunks in pieces of at most ``size`` bytes (memoryview slices); a batch
    frame's parts each so, or the frame as it is if ``size`` is ``WHOLE``."""
    async for frame in frames:
        if isinstance(frame, tuple) and size >= WHOLE:
            yield frame
            continue
        for chunk in frame if isinstance(frame, tuple) else (frame,):
            if len(chunk) <= size:
                yield chunk
                continue
            view = memoryview(chunk)
            for start in range(0, len(view), size):
                yield view[start : start + size]
                # A send into a socket with room returns without giving the loop a turn: let
                # it run between pieces, so other streams are served and a lost connection is
                # seen before more pieces are written to it.
                await asyncio.sleep(0)


def _error_frame(kind: str, message: str) -> bytes:
    return encode_json_frame(FrameKind.ERROR, {"error": {"kind": kind, "message": message}})


class _DrainingError(Exception):
    """The server was asked to stop: hand the client over at the next unsent batch."""


async def stream_frames(
    plan: StreamPlan,
    executor: Executor,
    *,
    prefetch: int,
    heartbeat_s: float,
    draining: Callable[[], bool] = _never,
    on_batch: Callable[[int, int], None] = _ignore,
    on_error: Callable[[str], None] = _ignore,
    batches: Callable[[int, int], Future[EncodedBatch]] | None = None,
    window: BatchWindow | None = None,
    sibling_ports: Sequence[int] = (),
) -> AsyncIterator[Chunk | Frame]:
    """The whole response body: header, batches in order (each a ``Frame`` of parts), then
    an end frame if finite.

    ``batches(epoch, batch)`` starts making a batch (default: ``plan.encode_batch`` on
    ``executor``; ``shared.SharedBatches`` shares them between identical streams).
    ``window`` bounds the batches in flight by the memory budget too (at most ``prefetch``
    of them, fewer while the budget has no bytes to spare; it is closed with the stream).
    ``on_batch(images, nbytes)`` is told of each batch handed to the server to send, and
    ``on_error(kind)`` of a failure; a failure after the header becomes an error frame (the
    status line is already sent).
    When ``draining()`` turns true the stream ends with a go-away frame naming the next batch
    the client has not received, so it resumes elsewhere without losing or repeating one.
    The header names ``sibling_ports``, the box's server processes, for the client to
    spread the stream over (``siblings``).
    """
    told = {"sibling_ports": list(sibling_ports)} if sibling_ports else {}
    yield encode_json_frame(FrameKind.HEADER, {**plan.header(), **told})
    if batches is None:

        def batches(epoch: int, batch: int) -> Future[EncodedBatch]:
            return executor.submit(plan.encode_batch, epoch, batch)

    room = window if window is not None else BatchWindow()
    spec = plan.spec
    todo = positions(
        spec.start.epoch,
        spec.start.batch,
        plan.batches_per_epoch,
        spec.epochs,
        spec.stride,
        spec.batches,
    )
    pending: deque[tuple[tuple[int, int], Future[EncodedBatch]]] = deque()
    sent = 0
    upcoming: tuple[int, int] | None = None
    try:
        for epoch, batch in todo:
            upcoming = (epoch, batch)
            if draining():
                raise _DrainingError
            # No bytes in the budget for one more batch in flight: send the oldest first
            # (there is one: the window always has room when it holds none).
            while not room.take():
                async for chunk in _oldest(pending, heartbeat_s, draining, on_batch):
                    yield chunk
                sent += 1
                room.give()
            try:
                pending.append(((epoch, batch), batches(epoch, batch)))
            except RuntimeError as exc:  # the pool is closed: the server is shutting down
                raise _DrainingError from exc
            upcoming = None
            if len(pending) >= prefetch:
                async for chunk in _oldest(pending, heartbeat_s, draining, on_batch):
                    yield chunk
                sent += 1
                room.give()
        while pending:
            async for chunk in _oldest(pending, heartbeat_s, draining, on_batch):
                yield chunk
            sent += 1
            room.give()
        yield encode_json_frame(FrameKind.END, {"batches": sent})
    except _DrainingError:
        resume_at = pending[0][0] if pending else upcoming
        if resume_at is None:  # nothing left to send: the stream is complete
            yield encode_json_frame(FrameKind.END, {"batches": sent})
        else:
            yield encode_json_frame(
                FrameKind.GOAWAY,
                {"next": list(resume_at), "reason": "the server is shutting down"},
            )
    except SampleError as exc:
        log.warning("stream of %s stopped: %s", plan.source.name, exc)
        on_error("stream_sample_error")
        yield _error_frame("sample_error", str(exc))
    except Exception as exc:
        log.exception("stream of %s failed", plan.source.name)
        on_error("stream_internal_error")
        yield _error_frame("internal_error", f"{type(exc).__name__}: {exc}")
    finally:
        # A batch being made holds its memory until it is done: its room is kept till then.
        running = [future for _, future in pending if not future.cancel() and not future.done()]
        room.close_after(running)


async def _oldest(
    pending: deque[tuple[tuple[int, int], Future[EncodedBatch]]],
    heartbeat_s: float,
    draining: Callable[[], bool],
    on_batch: Callable[[int, int], None],
) -> AsyncIterator[Chunk | Frame]:
    """Heartbeats while the oldest batch is still being made, then that batch's frame.

    Heartbeats keep clients' per-read timeouts from firing on slow batches.
    """
    made = pending[0][1]
    if made.done() and not made.cancelled():
        # Made while earlier ones were sent, as a stream that keeps ahead of its client
        # finds them: no asyncio future, wake-up of the loop through its self-pipe, or
        # heartbeat timer for it. The loop still gets its turn between batches (other
        # streams, a lost connection) though every send of this one found room.
        await asyncio.sleep(0)
    else:
        ready: asyncio.Future[EncodedBatch] = asyncio.wrap_future(made)
        while not (await asyncio.wait({ready}, timeout=heartbeat_s))[0]:
            if draining():
                raise _DrainingError
            yield _HEARTBEAT
    pending.popleft()
    batch = made.result()
    on_batch(batch.images, batch.nbytes)
    yield tuple(batch.parts)


_HEARTBEAT = encode_json_frame(FrameKind.HEARTBEAT)
