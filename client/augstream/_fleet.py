"""The replicas one stream reads from: which take part, and a thread that watches them.

Every few seconds (and at once after a failure) the replicas' names are resolved again: a
new address joins the stream once its numerics fingerprint agrees with the stream's (and it
holds the stream's uploaded arrays), an address the name no longer lists finishes its grant
and leaves, a replica that failed is tried again after its back-off. When no replica is left
to try, the stream ends with ``ConnectionLostError``. The same thread reports to a replica how
long the consumer waited for batches (the servers' ``augstream_input_wait_seconds_total``,
which autoscaling follows).

Holds no reference to the ``Stream``: a stream dropped without ``close()`` is still
collected, and its finalizer stops the fleet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from augstream_protocol.info import StreamHeader
from augstream_protocol.numerics import families

from ._connection import Connection, RetryPolicy
from ._discovery import Endpoint, Replicas
from ._exceptions import ConnectionLostError
from ._http import unreachable
from ._recovery import Recovery
from ._schedule import Schedule
from ._worker import Shared, Waits, Worker, describe

__all__ = ["Fleet", "agreeing", "fingerprints", "window_for"]

log = logging.getLogger("augstream")

#: How often the fleet's thread looks at its workers (seconds).
_TICK_S = 0.1
#: Seconds without a new connection (which tells its replica) after which the consumer's
#: waiting is told in a request of its own.
REPORT_EVERY_S = 10.0
_PROBE_TIMEOUT_S = 5.0


def window_for(prefetch: int, replicas: int) -> int:
    """Batches the reorder buffer may hold: two grants of ``prefetch`` per replica, for up
    to 8 replicas (a lone replica streams ``prefetch`` ahead, as one connection does)."""
    return prefetch if replicas <= 1 else 2 * prefetch * min(replicas, 8)


def fingerprints(
    replicas: Replicas, endpoints: list[Endpoint], headers: dict[str, str]
) -> dict[Endpoint, dict[str, str] | None]:
    """Each endpoint's numerics fingerprint (``GET /v1/server``), None where it did not
    answer; asked of all at once."""

    def one(endpoint: Endpoint) -> dict[str, str] | None:
        try:
            response = replicas.http(endpoint).get(
                "/v1/server",
                headers=headers,
                timeout=_PROBE_TIMEOUT_S,
                extensions=endpoint.extensions,
            )
            if response.status_code != 200:
                return None
            numerics = response.json().get("numerics", {})
            return {str(k): str(v) for k, v in numerics.items()}
        except (httpx.HTTPError, ValueError):
            return None

    if len(endpoints) == 1:
        return {endpoints[0]: one(endpoints[0])}
    with ThreadPoolExecutor(min(16, len(endpoints))) as pool:
        return dict(zip(endpoints, pool.map(one, endpoints), strict=True))


def agreeing(
    prints: dict[Endpoint, dict[str, str] | None], wanted: list[str]
) -> tuple[list[Endpoint], dict[Endpoint, str]]:
    """The largest group of endpoints whose digests agree on every family in ``wanted``
    (ties: the group of the earliest endpoint; endpoints that did not answer join the first
    group, their streams' headers are checked again), and why each other one is left out."""
    groups: dict[tuple[str | None, ...], list[Endpoint]] = {}
    silent: list[Endpoint] = []
    for endpoint, found in prints.items():
        if found is None:
            silent.append(endpoint)
        else:
            groups.setdefault(tuple(found.get(f) for f in wanted), []).append(endpoint)
    if not groups:
        return silent, {}
    order = list(prints)
    key, chosen = max(groups.items(), key=lambda kv: (len(kv[1]), -order.index(kv[1][0])))
    left_out: dict[Endpoint, str] = {}
    for other, members in groups.items():
        if other is key:
            continue
        differ = [f for f, a, b in zip(wanted, key, other, strict=True) if a != b]
        for member in members:
            left_out[member] = (
                f"its numerics differ from {len(chosen)} other replica(s)' for "
                f"{', '.join(differ)}: its batches could differ in rare pixels"
            )
    return sorted([*chosen, *silent], key=order.index), left_out


@dataclass
class _Seat:
    """What the fleet knows of one endpoint."""

    worker: Worker | None = None
    #: Failures in a row (across workers); a batch delivered resets it.
    streak: int = 0
    retry_at: float = 0.0
    listed: bool = True
    #: Every worker this endpoint had (one at a time), for what each made.
    idents: list[int] = field(default_factory=list)


class Fleet:
    """The workers of one stream, and the thread that keeps them."""

    def __init__(
        self,
        replicas: Replicas,
        schedule: Schedule,
        header: StreamHeader,
        headers: dict[str, str],
        retry: RetryPolicy,
        *,
        prefetch: int,
        resolve_every_s: float,
        report: Callable[[Endpoint, float, int], bool],
        prepare: Callable[[Endpoint], str | None],
    ) -> None:
        self.replicas = replicas
        self.shared = Shared(
            schedule,
            header,
            headers,
            retry,
            threading.Event(),
            on_failure=self.failed,
            on_exclude=self.exclude,
            waits=Waits(),
            recovery=Recovery(header.batches_per_epoch, self._others, schedule.arrived),
        )
        self.prefetch = prefetch
        self.resolve_every_s = resolve_every_s
        self._report_to = report
        self._prepare = prepare
        #: Endpoints left out for good, with the reason (logged once).
        self.excluded: dict[Endpoint, str] = {}
        self._seats: dict[Endpoint, _Seat] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: tuple[Endpoint, BaseException] | None = None
        self._reconnected = 0

    def start(
        self,
        first: Endpoint,
        connection: Connection,
        count: int | None,
        others: list[Endpoint],
        *,
        resolve: bool = False,
    ) -> None:
        """Start with ``first``'s open connection, which asked for ``count`` batches (None:
        all), and a worker for each of ``others``; ``resolve``: look for replicas at once
        (the first's header named sibling processes)."""
        self._add(first, connection, count)
        for endpoint in others:
            self._add(endpoint)
        if resolve:
            self._nudge.set()
        self._thread = threading.Thread(target=self._watch, name="augstream-fleet", daemon=True)
        self._thread.start()

    def exclude(self, endpoint: Endpoint, reason: str) -> None:
        """Leave ``endpoint`` out of the stream, saying so once."""
        with self._lock:
            if endpoint in self.excluded:
                return
            self.excluded[endpoint] = reason
        self.shared.recovery.forget(str(endpoint))
        log.warning("augstream: leaving replica %s out of the stream: %s", endpoint, reason)

    def failed(self, endpoint: Endpoint, cause: BaseException) -> None:
        """A worker's connection failed (``shared.recovery`` tells it): note it, and look
        for replicas again at once."""
        self._last_error = (endpoint, cause)
        self._nudge.set()

    def _others(self, replica: str) -> int:
        """Replicas still taking part besides ``replica`` (``str(endpoint)``)."""
        with self._lock:
            return sum(
                1
                for endpoint, seat in self._seats.items()
                if str(endpoint) != replica
                and endpoint not in self.excluded
                and seat.worker is not None
                and seat.worker.alive
            )

    def consumed(self, waited: float) -> None:
        """The consumer took a batch after waiting ``waited`` seconds for it."""
        self.shared.waits.add(waited)

    @property
    def reconnects(self) -> int:
        """Connections opened after a failure, by every worker so far."""
        with self._lock:
            live = sum(s.worker.reconnects for s in self._seats.values() if s.worker)
            return self._reconnected + live

    def workers(self) -> dict[str, int]:
        """Batches each replica made for this stream so far (kept ones)."""
        made = self.shared.schedule.made
        with self._lock:
            found: dict[str, int] = {}
            for endpoint, seat in self._seats.items():
                for ident in seat.idents:
                    found[endpoint.address] = found.get(endpoint.address, 0) + made.get(ident, 0)
            return found

    def stop(self) -> None:
        """Stop every worker and the watching thread (idempotent, any thread)."""
        self.shared.stop.set()
        self.shared.schedule.close()
        with self._lock:
            workers = [s.worker for s in self._seats.values() if s.worker is not None]
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(5)
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(5)

    # -- the watching thread -------------------------------------------------------------

    def _add(
        self, endpoint: Endpoint, connection: Connection | None = None, count: int | None = None
    ) -> None:
        with self._lock:
            seat = self._seats.setdefault(endpoint, _Seat())
            self._ids += 1
            ident = self._ids
        first = None
        if connection is not None:
            first = (self.shared.schedule.opening(ident, count), connection)
        worker = Worker(
            ident,
            endpoint,
            self.replicas.http(endpoint),
            self.shared,
            first=first,
            failures=seat.streak,
        )
        with self._lock:
            seat.worker = worker
            seat.idents.append(ident)
            live = sum(1 for s in self._seats.values() if s.worker is not None)
        # The reorder buffer grows with the replicas reading into it (two grants of
        # ``prefetch`` batches each), up to 8 of them.
        self.shared.schedule.grow_window(window_for(self.prefetch, live), self.prefetch)

    def _watch(self) -> None:
        resolved_at = time.monotonic()
        stop = self.shared.stop
        while not stop.wait(_TICK_S):
            now = time.monotonic()
            if self._nudge.is_set() or now - resolved_at >= self.resolve_every_s:
                self._nudge.clear()
                resolved_at = now
                self._resolve()
            self._revive(now)
            if now - self.shared.waits.told_at >= REPORT_EVERY_S:
                self._report()

    def _resolve(self) -> None:
        try:
            endpoints = self.replicas.endpoints()
        except Exception as exc:  # a resolver failure is one more failure, not the end
            log.warning("augstream: resolving the replicas failed: %s", describe(exc))
            return
        with self._lock:
            known = set(self._seats) | set(self.excluded)
            for endpoint, seat in self._seats.items():
                seat.listed = endpoint in endpoints
                if not seat.listed and seat.worker is not None:
                    seat.worker.retiring.set()  # drained or scaled down: finish and leave
                if not seat.listed:
                    self.shared.recovery.forget(str(endpoint))
        new = [e for e in endpoints if e not in known]
        if not new:
            return
        wanted = families(self.shared.header.spec)
        reference = self.shared.header.numerics
        prints = fingerprints(self.replicas, new, self.shared.headers) if wanted else {}
        for endpoint in new:
            found = prints.get(endpoint)
            differ = [f for f in wanted if found is not None and found.get(f) != reference.get(f)]
            if differ and reference:
                self.exclude(
                    endpoint,
                    f"its numerics differ from the stream's for {', '.join(differ)}: its "
                    "batches could differ in rare pixels",
                )
                continue
            unfit = self._prepare(endpoint)
            if unfit is not None:
                self.exclude(endpoint, unfit)
                continue
            # A box's own server processes joining is how it streams, not news.
            say = log.info if endpoint.sibling else log.warning
            say("augstream: replica %s joins the stream", endpoint)
            self._add(endpoint)

    def _revive(self, now: float) -> None:
        retry = self.shared.retry
        schedule = self.shared.schedule
        restartable = 0
        with self._lock:
            seats = list(self._seats.items())
        for endpoint, seat in seats:
            worker = seat.worker
            if worker is not None and worker.alive:
                restartable += 1
                if worker.failures == 0:
                    seat.streak = 0
                continue
            if endpoint in self.excluded or not seat.listed:
                continue
            if worker is not None:
                # It gave up (failures) or was handed over (go-away): its streak carries on.
                with self._lock:
                    seat.streak = worker.failures
                    seat.retry_at = now + retry.delay(max(1, seat.streak))
                    seat.worker = None
                    self._reconnected += worker.reconnects
            if seat.streak > retry.attempts:
                continue
            restartable += 1
            if now >= seat.retry_at:
                self._add(endpoint)
        if not restartable and not schedule.over:
            schedule.fatal(self._lost(schedule.head))

    def _lost(self, head: int) -> ConnectionLostError:
        """The stream's end when no replica is left: where, after what, and what to do."""
        per_epoch = self.shared.per_epoch
        urls = ", ".join(self.replicas.urls)
        last, reason = "none", ""
        if self._last_error is not None:
            endpoint, cause = self._last_error
            last = f"{endpoint}: {describe(cause)}"
            if isinstance(cause, httpx.TransportError):
                error = unreachable(cause, str(endpoint))
                last, reason = str(error), error.reason
        return ConnectionLostError(
            f"stream lost at batch {head % per_epoch} of epoch {head // per_epoch}: "
            f"{self.shared.retry.attempts} reconnects failed to every replica of {urls}; "
            f"last error: {last}",
            url=urls,
            reason=reason,
        )

    def _report(self) -> None:
        with self._lock:
            targets = [e for e, s in self._seats.items() if s.worker and s.worker.alive]
        pending = self.shared.waits.take()
        if pending is None:
            return
        if not targets or not self._report_to(targets[0], *pending):
            self.shared.waits.give_back(pending)
