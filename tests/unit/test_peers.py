"""A peer's pace: one that keeps up the rate is never cut, one below it is cut after about
its slack (sooner the slower it is), one that stops after its slack, whatever the size of
what it is being sent."""

from __future__ import annotations

import asyncio
import time

import pytest

from augstream_service.peers import Pace, SlowPeerError, paced_send

KIB = 1 << 10


def _cut_after(pace: Pace, piece: int, reader_rate: float, limit_s: float = 10_000) -> float:
    """Seconds until ``pace`` cuts a reader taking ``piece``-byte sends at ``reader_rate``
    (inf: never, within ``limit_s``)."""
    elapsed = 0.0
    while elapsed < limit_s:
        needed = piece / reader_rate
        if needed > pace.allowance(piece):
            return elapsed + pace.allowance(piece)
        pace.spent(piece, needed)
        elapsed += needed
    return float("inf")


def test_a_reader_at_the_rate_is_never_cut() -> None:
    assert _cut_after(Pace(16 * KIB, 60), 256 * KIB, 16 * KIB) == float("inf")
    assert _cut_after(Pace(16 * KIB, 60), 256 * KIB, 1 << 20) == float("inf")


def test_a_trickle_below_the_rate_is_cut_after_a_while() -> None:
    # The trickler: ~8 KiB/s against the default 16 KiB/s and 60 s, 256 KiB pieces.
    seconds = _cut_after(Pace(16 * KIB, 60), 256 * KIB, 8 * KIB)
    assert 60 < seconds < 200
    # Slower is cut sooner.
    assert _cut_after(Pace(16 * KIB, 60), 256 * KIB, 2 * KIB) < seconds


def test_a_fast_start_buys_no_more_than_the_slack() -> None:
    pace = Pace(16 * KIB, 5)
    for _ in range(1000):  # a gigabyte taken at once
        pace.spent(1 << 20, 0.0)
    assert pace.budget == 5


class _Stuck:
    """An ASGI send that waits for ever while its connection drains ``rate`` bytes/s out of
    a buffer of ``backlog`` bytes (0: nothing drains)."""

    def __init__(self, backlog: int, rate: float) -> None:
        self.backlog, self.rate, self.began = backlog, rate, time.monotonic()

    def unsent(self) -> int:
        return max(0, int(self.backlog - self.rate * (time.monotonic() - self.began)))

    async def send(self, _: object) -> None:
        while self.unsent():
            await asyncio.sleep(0.01)


MESSAGE = {"type": "http.response.body", "body": bytes(1 << 20), "more_body": True}


def test_a_reader_that_takes_nothing_is_cut_after_the_slack_whatever_the_piece() -> None:
    async def run() -> float:
        stuck = _Stuck(backlog=1 << 20, rate=0)
        send = paced_send(stuck.send, Pace(16 * KIB, 0.3), stuck.unsent)
        started = time.monotonic()
        with pytest.raises(SlowPeerError):
            await send(MESSAGE)
        return time.monotonic() - started

    assert asyncio.run(run()) < 1.0


def test_without_the_connections_progress_a_piece_is_credited_first() -> None:
    async def run() -> None:
        stuck = _Stuck(backlog=1 << 20, rate=0)
        send = paced_send(stuck.send, Pace(16 * KIB, 0.3), None)
        with pytest.raises(TimeoutError):  # 0.3 s + 64 s for 1 MiB at 16 KiB/s: not yet cut
            await asyncio.wait_for(send(MESSAGE), 1.0)

    asyncio.run(run())


def test_a_reader_that_keeps_taking_is_not_cut() -> None:
    async def run() -> None:
        stuck = _Stuck(backlog=64 * KIB, rate=64 * KIB)  # 1 s of draining, at 4x the rate
        send = paced_send(stuck.send, Pace(16 * KIB, 0.3), stuck.unsent)
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    asyncio.run(run())
