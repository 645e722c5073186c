"""Timeouts for slow peers: whichever way the bytes go, a client keeps up a minimum pace.

uvicorn has no timeout on a request's body and none on a send, and its keep-alive timer is
reset by every byte received, so without these a client trickling one byte at a time holds a
connection, an upload slot or a stream slot for as long as it likes. (The request line and
headers have their own deadline, in ``server``.)

A ``Pace`` is a budget of seconds: moving n bytes earns n / rate seconds, waiting on the peer
spends them, and the budget never holds more than ``slack_s``. A peer keeping up the rate
never runs out, one below it runs out after about ``slack_s`` of being behind (sooner the
slower it is), and one that stops runs out after ``slack_s``; a fast start buys no more than
``slack_s`` of later stalling. Only time spent waiting on the peer counts: a stream whose
next batch is slow to make, or an upload whose disk write is slow, costs its client nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONNECTION",
    "PARTS",
    "BodyDeadline",
    "Pace",
    "SlowPeerError",
    "body_size",
    "paced_send",
]

log = logging.getLogger("augstream.peers")

#: The ASGI scope extension (``scope["extensions"]``) in which ``server.HeaderDeadline``
#: gives each request ``{"unsent": callable, "whole": bool}``: the bytes its connection has
#: not yet handed to the kernel, by which a blocked send's progress is seen, and whether it
#: writes large pieces without a copy (``directbody``: a stream need not cut its parts, and
#: sends each batch frame as one message of ``PARTS``).
CONNECTION = "augstream.connection"
#: The key of a body message, on a connection that writes whole parts, that carries a list
#: of buffers to write in order, as one chunk (its ``body`` is empty): one pass through the
#: send chain for a batch frame rather than one per part.
PARTS = "augstream.parts"
#: Seconds between looks at a blocked send's progress.
STEP_S = 0.5


def body_size(message: Message) -> int:
    """The bytes a body message carries: its ``body``, or its ``PARTS``."""
    parts = message.get(PARTS)
    if parts is None:
        return len(message.get("body", b""))
    return sum(memoryview(part).nbytes for part in parts)


class SlowPeerError(Exception):
    """The peer fell behind its pace for longer than its slack."""


class Pace:
    """The seconds a peer may still wait before it is too slow (see the module's doc)."""

    def __init__(self, rate: float, slack_s: float) -> None:
        self.rate = rate
        self.slack_s = slack_s
        self.budget = slack_s

    def allowance(self, size: int = 0) -> float:
        """Seconds a transfer of ``size`` bytes may take from now."""
        return self.budget + size / self.rate

    def spent(self, size: int, seconds: float) -> None:
        """``size`` bytes moved in ``seconds`` of waiting."""
        self.budget = min(self.slack_s, self.budget + size / self.rate - seconds)


def paced_send(send: Send, pace: Pace, unsent: Callable[[], int] | None = None) -> Send:
    """``send``, given up (``SlowPeerError``) when the peer falls behind ``pace``.

    A send waits while the connection's earlier bytes drain, then writes its message. With
    ``unsent`` (the connection's bytes not yet taken), a waiting send is looked at every
    ``STEP_S`` and earns what the connection took meanwhile, so a peer that takes nothing
    is cut after the pace's slack, however large the pieces; the send that waited has
    written nothing yet, so it is simply sent again. Without it, a message is credited its
    size before it moves (``Pace.allowance``), which lets a peer that takes nothing keep a
    piece's worth of seconds longer.
    """

    async def credited(message: Message) -> None:
        size = body_size(message)
        began = time.monotonic()
        try:
            # A deadline on this task (no task per send, as wait_for would make).
            async with asyncio.timeout(pace.allowance(size)):
                await send(message)
        except TimeoutError:
            raise SlowPeerError from None
        pace.spent(size, time.monotonic() - began)

    async def watched(message: Message) -> None:
        assert unsent is not None
        size = body_size(message)
        while pace.budget > 0:
            before, began = unsent(), time.monotonic()
            if not before:
                # Nothing of the connection's waits to drain: the send cannot wait, and
                # needs no deadline (a timer armed and cancelled per piece, for nothing).
                await send(message)
            else:
                try:
                    async with asyncio.timeout(min(STEP_S, pace.budget)):
                        await send(message)
                except TimeoutError:
                    pace.spent(max(0, before - unsent()), time.monotonic() - began)
                    continue
            pace.spent(max(0, before + size - unsent()), time.monotonic() - began)
            return
        raise SlowPeerError

    return credited if unsent is None else watched


class BodyDeadline:
    """ASGI middleware: a request's body must arrive at ``rate`` bytes/s, ``slack_s`` of
    slack (the first byte included). A body that falls behind gets a 408, the connection
    is closed, and the app sees ``SlowPeerError`` from its ``receive``.

    Once the body is complete, ``receive`` only waits for the client's disconnect (which a
    streaming response listens for as long as it streams): that wait has no deadline.
    """

    def __init__(self, app: ASGIApp, rate: float, slack_s: float) -> None:
        self.app = app
        self.rate = rate
        self.slack_s = slack_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pace = Pace(self.rate, self.slack_s)
        body_done = False
        started = False

        async def paced_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            began = time.monotonic()
            try:
                async with asyncio.timeout(pace.allowance()):
                    message = await receive()
            except TimeoutError:
                raise SlowPeerError(
                    f"the request body came slower than {self.rate:.0f} bytes/s "
                    f"for {self.slack_s:g} s"
                ) from None
            pace.spent(len(message.get("body", b"")), time.monotonic() - began)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, paced_receive, tracked_send)
        except SlowPeerError as exc:
            client = scope.get("client")
            log.warning(
                "closed a slow upload from %s to %s: %s",
                client[0] if client else "?",
                scope.get("path", "?"),
                exc,
            )
            if not started:
                await _timed_out(send, str(exc))


async def _timed_out(send: Send, message: str) -> None:
    body = json.dumps({"message": message, "detail": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        # The rest of the body is not read: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body})
