"""A stream's recoveries, told as they happen: one WARNING line on the ``augstream`` logger per
event, saying what broke, where the stream resumed and how long it took.

A replica's *episode* starts with its first failure (a broken connection, a busy or going-away
server) and lasts until that replica delivers a batch again, or is given up. Its retries in
between are one episode, logged at DEBUG only. The episode is told once, when the first batch
it left undelivered arrives (from the same replica after a reconnect, or from another one
that took its batches over): ``lost the stream at batch 5 of epoch 0 on X (why); resumed
there on Y after 2.3 s (3 attempts)``. A replica given up while others go on is one more
line; a stream with no replica left ends with ``ConnectionLostError`` instead (the error is
the word). A stream that is closed tells nothing.

``TALLY`` counts the recoveries of every stream of the process, and its consumers' waits, for
``InputStallMonitor``'s per-epoch report; ``told`` logs the error that ends a trainer's
stream before it is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ._exceptions import AugstreamError

__all__ = ["TALLY", "Recovery", "Tally", "told"]

log = logging.getLogger("augstream")


class Tally:
    """What every stream of this process went through: its recoveries and the seconds they
    took, and the seconds its consumers waited for a batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recoveries = 0
        self.seconds = 0.0
        self.waited = 0.0

    def add(self, seconds: float) -> None:
        """A recovery that took ``seconds``."""
        with self._lock:
            self.recoveries += 1
            self.seconds += seconds

    def wait(self, seconds: float) -> None:
        """A consumer waited ``seconds`` for a batch."""
        with self._lock:
            self.waited += seconds

    def read(self) -> tuple[int, float, float]:
        """``(recoveries, their seconds, seconds waited)`` so far."""
        with self._lock:
            return self.recoveries, self.seconds, self.waited


TALLY = Tally()

T = TypeVar("T")


def told(take: Callable[[], T]) -> T:
    """``take()``; a failure that ends a stream is first logged (ERROR, one line). Under
    TensorFlow a trainer's exception reaches the user wrapped in a PyFunc traceback, and this
    line is the first thing they see of it."""
    try:
        return take()
    except AugstreamError as exc:
        log.error("augstream: training cannot go on: %s", exc)
        raise


@dataclass
class _Episode:
    #: Where the stream was: the first position this replica left undelivered.
    position: int
    cause: str
    started: float = field(default_factory=time.monotonic)
    attempts: int = 1
    told: bool = False


class Recovery:
    """The open episodes of one stream's replicas (``str(endpoint)`` names a replica).

    ``others(replica)`` counts the replicas still taking part besides ``replica``;
    ``arrived(position)`` says whether the batch at a position has arrived.
    """

    def __init__(
        self,
        per_epoch: int,
        others: Callable[[str], int],
        arrived: Callable[[int], bool],
    ) -> None:
        self.per_epoch = max(1, per_epoch)
        self._others = others
        self._arrived = arrived
        self._episodes: dict[str, _Episode] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether an episode is open (a cheap check before ``delivered``)."""
        return bool(self._episodes)

    def _where(self, position: int) -> str:
        epoch, batch = divmod(position, self.per_epoch)
        return f"batch {batch} of epoch {epoch}"

    def failed(self, replica: str, cause: str, position: int) -> None:
        """``replica``'s connection failed; ``position`` is the first batch it still owed."""
        with self._lock:
            episode = self._episodes.get(replica)
            if episode is None:
                self._episodes[replica] = _Episode(position, cause)
            else:
                episode.attempts += 1  # what broke is the first cause; retries follow
        log.debug("augstream: replica %s failed at %s (%s)", replica, self._where(position), cause)

    def delivered(self, replica: str, position: int) -> None:
        """``replica`` delivered the batch at ``position``: tell the episodes it ends."""
        now = time.monotonic()
        lines: list[str] = []
        with self._lock:
            for name, episode in list(self._episodes.items()):
                if not episode.told and (
                    position == episode.position or self._arrived(episode.position)
                ):
                    episode.told = True
                    on = ""
                    if position == episode.position:
                        on = " on the same replica" if name == replica else f" on {replica}"
                    took = now - episode.started
                    TALLY.add(took)
                    retries = episode.attempts - 1
                    failed = f" and {retries} failed reconnect{'s' * (retries > 1)}"
                    lines.append(
                        f"augstream: lost the stream at {self._where(episode.position)} on "
                        f"{name} ({episode.cause}); resumed there{on} after {took:.1f} s"
                        f"{failed if retries else ''}"
                    )
            back = self._episodes.pop(replica, None)
        for line in lines:
            log.warning("%s", line)
        if back is not None and back.told and not lines:
            log.info("augstream: replica %s is back after %.1f s", replica, now - back.started)

    def gave_up(self, replica: str) -> None:
        """``replica`` is given up after too many failures in a row."""
        with self._lock:
            episode = self._episodes.pop(replica, None)
        others = self._others(replica)
        if episode is None or not others:
            return  # without others the stream ends with ConnectionLostError: that says it
        took = time.monotonic() - episode.started
        log.warning(
            "augstream: gave up on replica %s after %d failures in a row over %.1f s (first: "
            "%s); the stream goes on with the other %d",
            replica,
            episode.attempts,
            took,
            episode.cause,
            others,
        )

    def forget(self, replica: str) -> None:
        """``replica`` left the stream (drained, excluded, or the stream closed): no word."""
        with self._lock:
            self._episodes.pop(replica, None)
