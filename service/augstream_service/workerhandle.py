"""The server's handle on one worker process (``processes``): it starts the program
(``python -m augstream_service.workers``), sends it tasks and reads its replies, one pipe per
lane (a server thread's place), and stops it; and what both sides must read alike: which
worker owns which samples, and the announcement a worker makes when its part is made.
"""

from __future__ import annotations

import contextlib
import pickle
import select
import socket
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["ANNOUNCEMENT", "Worker", "WorkerLostError", "announced", "announcement", "owned_slots"]

#: Longest wait for a reply a worker announced (it sends it before it announces it).
_REPLY_TIMEOUT_S = 5.0
#: An announcement: the task's id, whether a reply came before it, and the worker's index,
#: as one little-endian uint64 (one write of 8 bytes is whole on a stream socket, whoever
#: else writes to it).
ANNOUNCEMENT = struct.Struct("<Q")


def owned_slots(ids: list[int], count: int) -> dict[int, list[int]]:
    """The slots of a batch's ``ids`` by the worker of ``count`` that owns them (sample id
    modulo ``count``: every image is decoded and cached by one worker)."""
    owned: dict[int, list[int]] = defaultdict(list)
    for slot, sample_id in enumerate(ids):
        owned[sample_id % count].append(slot)
    return owned


def announcement(ident: int, index: int, replied: bool = False) -> bytes:
    """What worker ``index`` writes once its part of task ``ident`` is made (its outcome in
    the block, ``reports.Outcome``) and, if ``replied``, a reply sent on its lane's pipe."""
    return ANNOUNCEMENT.pack(ident << 9 | replied << 8 | index)


def announced(data: bytes) -> Iterator[tuple[int, int, bool]]:
    """The (task id, worker index, replied) of each announcement in ``data`` (whole ones)."""
    for (value,) in ANNOUNCEMENT.iter_unpack(data):
        yield value >> 9, value & 0xFF, bool(value & 0x100)


class WorkerLostError(RuntimeError):
    """A worker process exited, or did not answer, while it had a batch's samples."""


class Worker:
    """One worker process and its channels: a pipe per lane (a server thread's place: a batch
    takes a lane and uses its pipe to every worker), so the thread that sends a task reads
    its reply itself (no reader thread to hand it over, and no wake-up of one per reply)."""

    def __init__(
        self, index: int, count: int, settings_json: str, lanes: int, done: list[int], board: str
    ) -> None:
        self.index = index
        pairs = [socket.socketpair() for _ in range(lanes)]
        theirs = [pair[1].fileno() for pair in pairs]
        # A program of its own (python -m augstream_service.workers), not multiprocessing's
        # spawn: that would import the parent's __main__ again in the child, and a script
        # that embeds the server without a __main__ guard would start itself anew.
        fds = f"{','.join(map(str, theirs))}:{','.join(map(str, done))}"
        command = [sys.executable, "-m", "augstream_service.workers", fds]
        self.process = subprocess.Popen(command, pass_fds=[*theirs, *done])
        for _, their in pairs:
            their.close()
        # One descriptor per pipe (a big box has threads x processes of them: ``openfiles``).
        self._conns = [Connection(ours.detach()) for ours, _ in pairs]
        # Polled before a reply is read, in case it is not there after all (a selector per
        # call is what ``Connection.poll`` would build).
        self._pollers = []
        for conn in self._conns:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            self._pollers.append(poller)
        # The settings (storage credentials among them) go over a pipe, not the command;
        # with them the block its cache figures go on (``reports.FiguresBoard``).
        self._conns[0].send_bytes(pickle.dumps((settings_json, index, count, board)))
        #: Its pipe broke or it did not answer: it is started again before its next task.
        self.lost = False

    # Messages are plain tuples, pickled with pickle itself: Connection.send makes a
    # ForkingPickler per message, copying copyreg's dispatch table each time (a fifth of the
    # main process's GIL time at 40 batches per second).

    def send(self, lane: int, task: bytes) -> None:
        """Send the pickled ``task`` on ``lane``'s pipe."""
        try:
            self._conns[lane].send_bytes(task)
        except (OSError, ValueError) as exc:
            self.lost = True
            raise WorkerLostError(f"worker {self.index}: {exc}") from None

    def reply(self, lane: int, ident: int) -> tuple[Any, ...]:
        """The reply to task ``ident``, read from ``lane``'s pipe once the worker announced
        one (``ProcessPool._await``): it is there, after any replies its lane's earlier
        batches left unread (given up when another worker failed first), which are dropped.
        ``("done", ident, its slots' errors, error counts)`` or ``("failed", ident, why)``."""
        conn = self._conns[lane]
        while True:
            if not self._pollers[lane].poll(_REPLY_TIMEOUT_S * 1000):
                self.lost = True  # announced and not sent: nothing to ask it again
                raise WorkerLostError(f"worker process {self.index} did not reply")
            try:
                reply: tuple[Any, ...] = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self.lost = True
                raise WorkerLostError(f"worker process {self.index} exited") from None
            if reply[1] == ident:
                return reply

    @property
    def alive(self) -> bool:
        # Asked before every task: a worker that exits is seen while a batch waits on it
        # (``ProcessPool._await``), so no wait() system call is needed here.
        return not self.lost and self.process.returncode is None

    def exited(self) -> bool:
        """Whether the process has exited (a wait() system call)."""
        return self.process.poll() is not None

    def stop(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                _shut_down(conn.fileno())  # the worker reads the end and exits
            conn.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _shut_down(fd: int) -> None:
    """Shut the socket ``fd`` down both ways, which ends it for its peer at once, even one
    blocked reading it (closing only drops this process's reference); ``fd`` stays open."""
    lent = socket.socket(fileno=fd)
    try:
        lent.shutdown(socket.SHUT_RDWR)
    finally:
        lent.detach()
