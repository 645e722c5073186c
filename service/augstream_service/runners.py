"""The server's worker threads: an ``Executor`` whose idle thread is woken by a pipe write.

A ``ThreadPoolExecutor`` wakes an idle thread by releasing a lock, a futex wake made while
the caller holds the GIL. On a box whose cores are all busy the kernel often runs the woken
thread at once in the waker's place, and the waker then sits preempted *holding the GIL*
until it runs again: the event loop's hand-off of each batch was charged ~11 µs of GIL per
image by py-spy that way (``benchmarks.gil_profile``, a warm stream with 2 workers on 2
cores). Here each thread waits in ``os.read`` on a pipe of its own, and ``submit`` wakes it
with ``os.write``, which CPython makes with the GIL released: a waker preempted in the wake
holds nothing, and the woken thread can take the GIL meanwhile.

Threads start as work first needs them (at most ``workers``); the most recently idle one is
woken first (its caches are warm). A task that raises has its exception on its future, as
with the pool. At interpreter exit, as with the pool, idle threads end and busy ones finish
their task and the queue first: a daemon thread stopped at exit inside OpenCV (which
releases the GIL) aborts the process ("terminate called without an active exception").
An idle thread holds no reference to its ``Runners``, so one dropped without ``shutdown``
is collected and its idle threads end (busy ones hold it until the queue is done). A forked
child starts threads of its own and leaves its parent's alone (``_after_fork``).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["Runners"]

P = ParamSpec("P")
T = TypeVar("T")

_Item = tuple[Future[Any], Callable[[], Any]]


class _Runner:
    """One thread, the pipe it waits on, and the task handed to it."""

    def __init__(self, owner: Runners, name: str, first: _Item) -> None:
        #: Its ``Runners`` while it has work; None while idle, so that an idle thread does
        #: not keep one that nothing else holds (then ``_end_idle`` ends it).
        self.owner: Runners | None = owner
        self.item: _Item | None = first
        self.wake_read, self.wake_write = os.pipe()
        self.thread = threading.Thread(target=self._loop, name=name)

    def hand(self, item: _Item | None, owner: Runners | None = None) -> None:
        """Give the (idle) thread ``item`` of ``owner`` and wake it (None: end)."""
        self.item, self.owner = item, owner
        os.write(self.wake_write, b"\0")

    def _loop(self) -> None:
        try:
            while self.item is not None:
                item, self.item = self.item, None
                _run(*item)
                del item  # an idle thread keeps nothing of its last task (a batch)
                owner, self.owner = self.owner, None
                if owner is not None and owner._next(self):
                    continue
                del owner  # ``_next`` made it idle: it keeps nothing of its Runners either
                os.read(self.wake_read, 1)  # idle: the GIL is free while it waits
        finally:
            os.close(self.wake_read)
            os.close(self.wake_write)


def _run(future: Future[Any], call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:  # the caller's to see, as the pool gives it
        future.set_exception(exc)
        # Its traceback holds this frame: without this the exception (on the future) would
        # keep the future and the call's arguments (a batch) in a cycle until a collection.
        del future, call
    else:
        future.set_result(result)


#: Every instance not shut down, ended before the interpreter joins its threads at exit.
_live: weakref.WeakSet[Runners] = weakref.WeakSet()


def _at_exit() -> None:
    for runners in list(_live):
        runners.shutdown(wait=False)


# Called before non-daemon threads are joined (atexit runs after: idle threads would keep
# the interpreter waiting in os.read); ThreadPoolExecutor ends its threads the same way.
threading._register_atexit(_at_exit)  # type: ignore[attr-defined]


def _after_fork() -> None:
    """In a forked child: every ``Runners`` inherited has none of its threads, only their
    wake pipes, shared with the parent. Waking one would wake the parent's thread (and the
    child's exit, which ends idle threads, ended the parent's: its next task then went to a
    closed pipe). So the child forgets them, closes its copies of the pipes, and starts
    threads of its own as its tasks need them; the parent's queued tasks are not its own."""
    for runners in list(_live):
        # In place (the finalizer holds it too): a thread that held it is not in the child.
        runners._lock._at_fork_reinit()  # type: ignore[attr-defined]
        for runner in runners._idle:
            os.close(runner.wake_read)
            os.close(runner.wake_write)
        runners._idle.clear()  # in place: the finalizer holds this list
        runners._threads.clear()
        runners._queued.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _end_idle(lock: threading.Lock, idle: list[_Runner]) -> None:
    """A ``Runners`` collected without ``shutdown``: its idle threads end (it holds none busy:
    a busy thread holds its ``Runners``)."""
    with lock:
        for runner in idle:
            runner.hand(None)
        idle.clear()


class Runners(Executor):
    """At most ``workers`` threads named ``{prefix}_{n}``, tasks beyond them queued in order."""

    def __init__(self, workers: int, prefix: str = "augstream") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.prefix = prefix
        self._lock = threading.Lock()
        self._idle: list[_Runner] = []
        self._queued: deque[_Item] = deque()
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        _live.add(self)
        weakref.finalize(self, _end_idle, self._lock, self._idle)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a thread; ``RuntimeError`` after ``shutdown``."""
        future: Future[T] = Future()
        item: _Item = (future, lambda: fn(*args, **kwargs))
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                self._idle.pop().hand(item, self)
            elif len(self._threads) < self.workers:
                runner = _Runner(self, f"{self.prefix}_{len(self._threads)}", item)
                try:
                    runner.thread.start()
                except BaseException:  # no thread (a resource limit): nothing of it is kept
                    os.close(runner.wake_read)
                    os.close(runner.wake_write)
                    raise
                self._threads.append(runner.thread)
            else:
                self._queued.append(item)
        return future

    def _next(self, runner: _Runner) -> bool:
        """After a task: whether ``runner`` took a queued one; else it is idle (or, after
        ``shutdown``, handed the end)."""
        with self._lock:
            if self._queued:
                runner.item, runner.owner = self._queued.popleft(), self
                return True
            if self._shutdown:
                runner.hand(None)
            else:
                self._idle.append(runner)
            return False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new tasks; end idle threads now and busy ones after their task (and the
        queue, unless ``cancel_futures``). ``wait`` joins them."""
        _live.discard(self)
        with self._lock:
            self._shutdown = True
            dropped = list(self._queued) if cancel_futures else []
            if cancel_futures:
                self._queued.clear()
            for runner in self._idle:
                runner.hand(None)
            self._idle.clear()
            threads = list(self._threads)
        for future, _ in dropped:
            future.cancel()
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
