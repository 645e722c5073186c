"""The server's worker threads: tasks run, at most ``workers`` at once, queue beyond that in
order, raise on their futures, end on shutdown; an idle thread keeps nothing of its task."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import CancelledError

import pytest

from augstream_service.runners import Runners
from tests.forked import in_forked_child


def test_tasks_run_on_named_threads_and_give_their_results() -> None:
    runners = Runners(2, prefix="t")
    try:

        def square(n: int) -> tuple[int, str]:
            return n * n, threading.current_thread().name

        futures = [runners.submit(square, n) for n in range(20)]
        results = [future.result(timeout=10) for future in futures]
    finally:
        runners.shutdown()
    assert [value for value, _ in results] == [n * n for n in range(20)]
    assert {name for _, name in results} <= {"t_0", "t_1"}


def test_no_more_than_workers_run_at_once() -> None:
    runners = Runners(3)
    lock, running, most = threading.Lock(), [0], [0]

    def task() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    futures = [runners.submit(task) for _ in range(15)]
    for future in futures:
        future.result(timeout=10)
    runners.shutdown()
    assert most[0] == 3
    assert len(runners._threads) == 3


def test_tasks_beyond_the_workers_wait_and_start_in_the_order_they_came() -> None:
    runners = Runners(1)
    gate, order = threading.Event(), list[int]()
    blocker = runners.submit(gate.wait)
    futures = [runners.submit(order.append, n) for n in range(10)]
    gate.set()
    blocker.result(timeout=10)
    for future in futures:
        future.result(timeout=10)
    runners.shutdown()
    assert order == list(range(10))


def test_a_task_s_exception_is_on_its_future_and_the_thread_goes_on() -> None:
    runners = Runners(1)

    def fail() -> None:
        raise ValueError("bad sample")

    with pytest.raises(ValueError, match="bad sample"):
        runners.submit(fail).result(timeout=10)
    assert runners.submit(lambda: 7).result(timeout=10) == 7
    runners.shutdown()


def test_shutdown_ends_every_thread_and_cancels_the_queue_when_asked() -> None:
    runners = Runners(1)
    gate = threading.Event()
    busy = runners.submit(gate.wait)
    queued = runners.submit(lambda: 1)
    stopper = threading.Thread(target=runners.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    time.sleep(0.05)
    gate.set()
    stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert busy.result(timeout=1) is True
    with pytest.raises(CancelledError):
        queued.result(timeout=1)
    assert not any(thread.is_alive() for thread in runners._threads)
    with pytest.raises(RuntimeError, match="after shutdown"):
        runners.submit(lambda: 1)


def test_an_idle_thread_keeps_nothing_of_its_last_task() -> None:
    class Batch:
        pass

    runners = Runners(1)
    made = runners.submit(Batch).result(timeout=10)
    gone = weakref.ref(made)
    del made
    time.sleep(0.05)  # the thread back waiting
    gc.collect()
    try:
        assert gone() is None
    finally:
        runners.shutdown()


def test_runners_dropped_without_shutdown_end_their_idle_threads() -> None:
    runners = Runners(2, prefix="dropped")
    gate = threading.Event()
    first = runners.submit(gate.wait)
    assert runners.submit(lambda: 2).result(timeout=10) == 2
    threads = list(runners._threads)
    gone = weakref.ref(runners)
    del runners  # one thread busy: it holds its Runners, and the queue would still run
    assert gone() is not None
    gate.set()
    assert first.result(timeout=10) is True
    for thread in threads:
        thread.join(timeout=10)
    gc.collect()
    assert gone() is None
    assert not [thread.name for thread in threads if thread.is_alive()]


def test_a_dropped_runners_still_runs_what_was_queued() -> None:
    runners = Runners(1)
    gate = threading.Event()
    runners.submit(gate.wait)
    queued = runners.submit(lambda: "ran")
    (thread,) = runners._threads
    del runners
    gate.set()
    assert queued.result(timeout=10) == "ran"
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Runners(0)


_EXIT_WHILE_IN_OPENCV = """
import time
import cv2
import numpy as np
from augstream_service.runners import Runners
from tests.forked import in_forked_child

cv2.setNumThreads(1)
runners = Runners(2)
image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)

def blur():
    for _ in range(3):
        cv2.GaussianBlur(image, (31, 31), 0)
    print("done", flush=True)

for _ in range(4):
    runners.submit(blur)
time.sleep(0.05)
runners.shutdown(wait=False, cancel_futures=True)  # as the app's lifespan ends
"""


def test_the_process_exits_cleanly_while_its_tasks_are_inside_opencv() -> None:
    # Daemon threads stopped at exit inside OpenCV abort the process (SIGABRT, 3 runs of 3).
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WHILE_IN_OPENCV], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("done") >= 2  # the running tasks finished; the queued were cancelled


def test_a_thread_that_cannot_start_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    runners = Runners(1)
    before = len(os.listdir("/proc/self/fd"))
    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            runners.submit(lambda: 1)
    assert len(os.listdir("/proc/self/fd")) == before  # its pipe closed
    assert runners.submit(lambda: 2).result(timeout=10) == 2  # the slot is free again
    runners.shutdown(wait=True)


def test_a_failed_task_s_arguments_go_with_its_future_without_a_collection() -> None:
    class Batch:
        pass

    def fail(batch: Batch) -> None:
        raise ValueError("bad batch")

    runners = Runners(1)
    gc.disable()
    try:
        batch = Batch()
        gone = weakref.ref(batch)
        future = runners.submit(fail, batch)
        assert isinstance(future.exception(timeout=10), ValueError)
        time.sleep(0.05)  # the thread back waiting
        del future, batch
        assert gone() is None  # no cycle through the traceback keeps it
    finally:
        gc.enable()
        runners.shutdown()


def _nothing() -> None:
    """A forked child's work: none; it exits as multiprocessing's children do, through
    ``threading._shutdown`` (which runs the atexit hooks of threading)."""


def test_a_forked_child_leaves_its_parent_s_threads_alone() -> None:
    # The child inherits the parent's Runners and their threads' wake pipes, not the threads:
    # ending them at its exit wrote to the parent's pipes and ended the parent's idle thread,
    # whose next task then went to a closed pipe (EBADF) or, its number reused, another file.
    runners = Runners(1, "forked")
    assert runners.submit(lambda: 1).result(timeout=10) == 1  # its thread now idle
    in_forked_child(_nothing)
    time.sleep(0.2)  # time for a thread woken by the child to end
    assert runners.submit(lambda: 2).result(timeout=10) == 2
    assert [t.name for t in threading.enumerate()].count("forked_0") == 1
    runners.shutdown()


def _submit_in_child(runners: Runners) -> bool:
    return runners.submit(lambda: os.getpid()).result(timeout=30) == os.getpid()


def test_a_forked_child_runs_its_own_tasks_on_threads_of_its_own() -> None:
    runners = Runners(2, "inherited")
    assert runners.submit(lambda: 1).result(timeout=10) == 1
    assert in_forked_child(_submit_in_child, runners, timeout=40) is True
    assert runners.submit(lambda: 3).result(timeout=10) == 3
    runners.shutdown()
