"""A batch's wait on its workers (``ProcessPool._await``): every owner announces its part done
on the lane's socket, and the waiting thread runs again once, when the last has (not once per
worker), whatever other batches left there; a worker that exits while it is awaited is lost
within a look, not after the task's timeout."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from augstream_service import Settings
from augstream_service.processes import _LOOK_S, ProcessPool, WorkerLostError
from augstream_service.workerhandle import announcement
from tests.imagefolder import make_image_folder


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ProcessPool]:
    root = make_image_folder(tmp_path / "pets", per_class=(2, 2))
    made = ProcessPool(Settings(datasets=[root], threads=1, upload_dir=tmp_path / "up"), 4)
    yield made
    made.close()


class _Counted:
    """The lane's socket, its reads counted (a ``socket.socket`` takes no new attributes)."""

    def __init__(self, real: socket.socket) -> None:
        self.real, self.reads = real, 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.reads += 1
        return self.real.recv(size, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _announce(pool: ProcessPool, ident: int, index: int) -> None:
    """What worker ``index`` writes when its part of task ``ident`` is made."""
    os.write(pool._theirs[0].fileno(), announcement(ident, index))


def _waiting(pool: ProcessPool, ident: int) -> tuple[threading.Thread, list[Any]]:
    ended: list[Any] = []

    def wait() -> None:
        try:
            pool._await(0, ident, pool._workers)
            ended.append("done")
        except WorkerLostError as exc:
            ended.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, ended


def test_the_wait_ends_once_every_owner_announced_and_runs_once(pool: ProcessPool) -> None:
    counted = _Counted(pool._done[0])
    pool._done[0] = counted  # type: ignore[assignment]
    thread, ended = _waiting(pool, 7)
    for index in (2, 0, 3, 1):
        time.sleep(0.05)
        _announce(pool, 7, index)
    thread.join(timeout=5)
    assert ended == ["done"]
    # The announcements came apart and the thread ran once for all of them (no look passed
    # meanwhile to wake it either): one wake-up per batch, not one per worker.
    assert counted.reads == 1


def test_announcements_of_other_tasks_are_not_counted(pool: ProcessPool) -> None:
    _announce(pool, 6, 1)  # a batch given up earlier on this lane
    thread, ended = _waiting(pool, 7)
    for index in (2, 0, 3):
        _announce(pool, 7, index)
    _announce(pool, 8, 1)  # the right worker, another task
    time.sleep(0.2)
    assert not ended  # worker 1 has not announced task 7
    _announce(pool, 7, 1)
    thread.join(timeout=5)
    assert ended == ["done"]


def test_a_worker_that_exits_while_awaited_is_lost_within_a_look(pool: ProcessPool) -> None:
    thread, ended = _waiting(pool, 9)
    for index in (0, 2, 3):
        _announce(pool, 9, index)
    time.sleep(0.1)
    os.kill(pool._workers[1].process.pid, signal.SIGKILL)
    started = time.monotonic()
    thread.join(timeout=10)
    assert isinstance(ended[0], WorkerLostError) and "exited" in str(ended[0])
    assert time.monotonic() - started < 3 * _LOOK_S
    assert pool._workers[1].lost and not pool._workers[0].lost


def test_a_pool_closed_under_a_wait_ends_it_at_once(pool: ProcessPool) -> None:
    thread, ended = _waiting(pool, 11)
    time.sleep(0.1)
    started = time.monotonic()
    pool.close()
    thread.join(timeout=10)
    assert isinstance(ended[0], WorkerLostError) and "stopping" in str(ended[0])
    assert time.monotonic() - started < 10
