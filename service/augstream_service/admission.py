"""Admission of one-shot work (previews, fits, uploads): a cap per kind and per owner, the
memory the request reserves, and its cancellation when its client goes away.

Streams have their own slots (``producer.StreamSlots``, refused at once); previews and fits
get theirs here, so no kind can take the others' turn: each has its concurrency cap (and,
in the scheduler, a cap on the workers it may use at once). A request over a cap waits its
turn in the event loop (no thread held) for a while, then is refused with a 503 (429 for
the caller's own cap) and ``Retry-After``; one that does not fit in the memory budget is
refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from augstream_protocol.stats import StatsRequest

from .costs import batch_cost
from .errors import BusyError
from .memory import BatchWindow, MemoryBudget, MemoryBudgetError, Reservation
from .pipeline import StreamPlan

if TYPE_CHECKING:
    from .state import ServerState
from .scheduler import Lane

__all__ = [
    "KindSlots",
    "Slots",
    "admitted",
    "fit_admitted",
    "reserving",
    "stream_window",
    "until_gone",
    "while_connected",
]

T = TypeVar("T")


class Slots:
    """Live requests counted against a server's cap (``limit``) and each owner's
    (``per_owner``; an owner is an API key, or a client address on a server without keys).
    Touched only from the event loop."""

    def __init__(self, limit: int, per_owner: int | None = None) -> None:
        self.limit = limit
        self.per_owner = per_owner
        self.active = 0
        self.by_owner: Counter[str] = Counter()

    def acquire(self, owner: str) -> Callable[[], None]:
        """Take a slot for ``owner`` (its caps checked first); returns its release."""
        self.active += 1
        self.by_owner[owner] += 1

        def release() -> None:
            self.active -= 1
            self.by_owner[owner] -= 1
            if not self.by_owner[owner]:
                del self.by_owner[owner]

        return release


class KindSlots(Slots):
    """Concurrent requests of one kind, against the server's cap and each owner's; a
    request over a cap waits for its turn up to ``wait_s``."""

    def __init__(
        self, kind: str, limit: int, per_owner: int | None, setting: str, wait_s: float
    ) -> None:
        super().__init__(limit, per_owner)
        self.kind = kind
        self.setting = setting
        self.wait_s = wait_s
        self._freed = asyncio.Event()

    def _full(self, owner: str) -> BusyError | None:
        if self.per_owner is not None and self.by_owner[owner] >= self.per_owner:
            return BusyError(
                429,
                f"this key (or address) already runs {self.per_owner} {self.kind}s, the "
                f"most one may run at once ({self.setting}_per_key); retry when one ends",
            )
        if self.active >= self.limit:
            return BusyError(
                503,
                f"this server already runs {self.limit} {self.kind}s, its limit "
                f"({self.setting}); retry shortly",
            )
        return None

    async def enter(self, owner: str) -> Callable[[], None]:
        """Take a slot for ``owner`` (returns its release), waiting up to ``wait_s`` for
        one; ``BusyError`` naming the cap after that."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while (refusal := self._full(owner)) is not None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise refusal
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._freed.wait()
        released = self.acquire(owner)

        def release() -> None:
            released()
            # Every waiter looks again; a new event for those that still find no room.
            self._freed.set()
            self._freed = asyncio.Event()

        return release


def admitted(budget: MemoryBudget, nbytes: int, what: str, owner: str) -> Reservation:
    """``nbytes`` of the memory budget for ``what``, or a 503 naming the budget."""
    try:
        return budget.reserve(nbytes, what, owner=owner)
    except MemoryBudgetError as exc:
        raise BusyError(503, str(exc)) from None


def reserving(budget: MemoryBudget, what: str, owner: str) -> Callable[[int], Reservation]:
    """``admitted`` for ``what`` of ``owner``, once its size is known."""
    return lambda nbytes: admitted(budget, nbytes, what, owner)


def stream_window(budget: MemoryBudget, plan: StreamPlan, owner: str) -> BatchWindow:
    """A new stream's window of batches: its first batch reserved now (a 503 naming the
    budget if it does not fit), so it can always make progress; more are taken while the
    budget has bytes to spare."""
    cost = batch_cost(plan)
    return BatchWindow(budget, cost, owner, admitted(budget, cost, "a batch of this stream", owner))


async def until_gone(request: Request) -> None:
    """Return when the client disconnects (its request body must have been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, lane: Lane, job: Awaitable[T]) -> T:
    """``job``'s result (work on ``lane``: a task's future, or a thread that submits its
    tasks there). If the client leaves first the lane is abandoned (queued tasks dropped,
    running ones stop at their next sample), ``job`` is waited for (its memory stays
    reserved until it has let go of it), and ``ClientDisconnect`` is raised."""
    work = asyncio.ensure_future(job)
    gone = asyncio.ensure_future(until_gone(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not work.done():
        lane.abandon()
        await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # seen: not logged as never retrieved
        raise ClientDisconnect  # a 499 in the request log (``errors``)
    return work.result()


async def fit_admitted(
    state: ServerState, request: StatsRequest, connection: Request
) -> dict[str, Any]:
    """``POST /v1/stats``: the fit under the caps (a wait, then 503/429), its memory reserved
    when it computes (a cached answer needs none), cancelled if its client goes."""
    owner = connection.state.owner
    release = await state.fits.enter(owner)
    try:
        lane = state.scheduler.lane("fit", owner)
        reserve = reserving(state.budget, "this fit", owner)
        books = (state.catalog, state.uploads, state.limits, state.reader, lane, reserve)
        fit = run_in_threadpool(state.stats.fit, request, *books)
        return await while_connected(connection, lane, fit)
    finally:
        release()
