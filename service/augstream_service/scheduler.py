"""Share the worker threads fairly: between kinds of work, then API keys, then each key's flows.

Every task that makes pixels (a stream's batch, a preview, a chunk of a fit) is submitted
through a ``Lane``: an ``Executor`` for one kind, owner (an API key, or a client address
without keys) and flow (a stream, one preview, one fit). The scheduler hands at most
``workers`` tasks to the pool at once and, when a worker frees, picks the next by fair
queueing at each level in turn: the kind that has had the least work per weight among those
waiting (and under its cap), then the owner (weighted: ``key_weights``), then the flow. So a
key with six streams and a key with one each get half the workers while both are busy, and a
fit or a preview never takes every worker from streams.

Work is measured in worker-seconds, counted when a task ends; a task running counts at its
flow's recent mean meanwhile, so picks made between two ends see it. A node that turns busy
starts level with the least served of those busy already (finished work only: a wrong guess
of a running task's cost is not copied), so an idle key banks no credit.
With worker processes (``processes``) a batch's samples are made in them by the thread that
runs its task, so the same picks share the processes.

A task's thread can see that its flow was abandoned (``checkpoint``): previews and fits
whose client went away stop at their next sample.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

__all__ = ["STREAMS", "AbandonedError", "FairScheduler", "Lane", "checkpoint"]

P = ParamSpec("P")
T = TypeVar("T")

#: What a task is assumed to cost before its flow has finished one (seconds).
_FIRST_GUESS_S = 0.05
#: Weight of the newest task in a flow's mean cost.
_MEAN_WEIGHT = 0.3
#: The kind that always keeps a worker: other kinds together leave it one (when there are two).
STREAMS = "stream"

_current = threading.local()


class AbandonedError(Exception):
    """The task's flow was abandoned (its client went away) while it ran."""


def checkpoint() -> None:
    """Raise ``AbandonedError`` if the task running in this thread belongs to an abandoned flow
    (a no-op outside the scheduler's tasks, e.g. in worker processes)."""
    lane = getattr(_current, "lane", None)
    if lane is not None and lane.abandoned:
        raise AbandonedError("the request was abandoned by its client")


@dataclass
class _Node:
    """A kind, an owner or a flow: how much it was served (per weight), and its tasks."""

    weight: float = 1.0
    #: Worker-seconds of finished tasks, and the estimates of running ones, per weight.
    served: float = 0.0
    inflight: float = 0.0
    waiting: int = 0
    running: int = 0
    children: dict[Hashable, _Node] = field(default_factory=dict)
    tasks: deque[_Task] = field(default_factory=deque)
    mean_s: float = _FIRST_GUESS_S

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def share(self) -> float:
        """What it has had, counting its running tasks at their estimates."""
        return self.served + self.inflight


@dataclass
class _Task:
    lane: Lane
    call: Callable[[], Any]
    future: Future[Any]
    charged: float = 0.0


class Lane(Executor):
    """An ``Executor`` whose tasks are one flow of the scheduler (``FairScheduler.lane``)."""

    def __init__(self, scheduler: FairScheduler, kind: str, owner: str) -> None:
        self.scheduler = scheduler
        self.kind = kind
        self.owner = owner
        self.abandoned = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; ``RuntimeError`` once the scheduler is closed."""
        future: Future[T] = Future()
        self.scheduler._enqueue(_Task(self, lambda: fn(*args, **kwargs), future))
        return future

    def abandon(self) -> None:
        """Drop this flow's queued tasks and make its running ones stop at their next
        ``checkpoint``."""
        self.abandoned = True
        self.scheduler._drop(self)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool is the app's: nothing to shut down here."""


class FairScheduler:
    """At most ``workers`` tasks at once on ``pool``, picked fairly (see the module).

    ``caps``: the most workers a kind may use at once; ``weights``: owners' weights
    (default 1).
    """

    def __init__(
        self,
        pool: Executor,
        workers: int,
        caps: Mapping[str, int] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.pool = pool
        self.workers = workers
        self.caps = dict(caps or {})
        self.weights = dict(weights or {})
        self.running = 0
        self.closed = False
        #: Worker-seconds done, by owner (``/v1/server``).
        self.seconds: dict[str, float] = {}
        self._root = _Node()
        self._lock = threading.Lock()

    def lane(self, kind: str, owner: str) -> Lane:
        """A new flow of ``kind`` for ``owner``."""
        return Lane(self, kind, owner)

    def close(self) -> None:
        """Refuse new tasks and cancel the queued ones."""
        with self._lock:
            self.closed = True
            queued = [task for _, _, flow in self._flows() for task in flow.tasks]
            self._root = _Node()
        for task in queued:
            task.future.cancel()

    def figures(self) -> dict[str, Any]:
        """Workers busy and tasks waiting by kind, and worker-seconds by owner."""
        with self._lock:
            kinds = {
                name: {"running": node.running, "waiting": node.waiting}
                for name, node in self._root.children.items()
            }
            return {
                "workers": self.workers,
                "caps": dict(self.caps),
                "kinds": kinds,
                "seconds_by_owner": {k: round(v, 3) for k, v in self.seconds.items()},
            }

    # --- queueing ----------------------------------------------------------------------

    def _path(self, lane: Lane) -> list[_Node]:
        """The kind, owner and flow nodes of ``lane``, made (busy-levelled) as needed."""
        path = []
        node = self._root
        for key, weight in (
            (lane.kind, 1.0),
            (lane.owner, self.weights.get(lane.owner, 1.0)),
            (lane, 1.0),
        ):
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node(weight=weight, mean_s=node.mean_s)
            if not child.busy:
                level = [c.served for c in node.children.values() if c.busy]
                if level:
                    child.served = max(child.served, min(level))
            path.append(child)
            node = child
        return path

    def _enqueue(self, task: _Task) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            path = self._path(task.lane)
            for node in path:
                node.waiting += 1
            path[-1].tasks.append(task)
            self._pump()

    def _drop(self, lane: Lane) -> None:
        with self._lock:
            kind = self._root.children.get(lane.kind)
            owner = None if kind is None else kind.children.get(lane.owner)
            flow = None if owner is None else owner.children.get(lane)
            if flow is None or kind is None or owner is None:
                return
            dropped = list(flow.tasks)
            flow.tasks.clear()
            for node in (kind, owner, flow):
                node.waiting -= len(dropped)
            self._prune(lane)
        for task in dropped:
            task.future.cancel()

    def _flows(self) -> list[tuple[_Node, _Node, _Node]]:
        return [
            (kind, owner, flow)
            for kind in self._root.children.values()
            for owner in kind.children.values()
            for flow in owner.children.values()
        ]

    def _prune(self, lane: Lane) -> None:
        """Forget idle nodes of ``lane``'s path (an owner's served time resets when it
        turns busy again anyway)."""
        kind = self._root.children.get(lane.kind)
        if kind is None:
            return
        owner = kind.children.get(lane.owner)
        if owner is not None:
            flow = owner.children.get(lane)
            if flow is not None and not flow.busy:
                del owner.children[lane]
            if not owner.busy and not owner.children:
                del kind.children[lane.owner]

    # --- dispatch ----------------------------------------------------------------------

    def _eligible(self, name: Hashable, kind: _Node) -> bool:
        if not kind.waiting:
            return False
        cap = self.caps.get(str(name))
        if cap is not None and kind.running >= cap:
            return False
        if name == STREAMS or self.workers < 2:
            return True
        others = sum(n.running for k, n in self._root.children.items() if k != STREAMS)
        return others < self.workers - 1

    def _pick(self) -> tuple[list[_Node], _Task] | None:
        kinds = [(n, k) for k, n in self._root.children.items() if self._eligible(k, n)]
        if not kinds:
            return None
        path = [min(kinds, key=lambda pair: pair[0].share)[0]]
        while path[-1].children:
            busy = [c for c in path[-1].children.values() if c.waiting]
            path.append(min(busy, key=lambda child: child.share))
        task = path[-1].tasks.popleft()
        for node in path:
            node.waiting -= 1
        return path, task

    def _pump(self) -> None:
        """Hand tasks to the pool while workers are free (the lock is held)."""
        while self.running < self.workers:
            picked = self._pick()
            if picked is None:
                return
            path, task = picked
            if task.future.cancelled():
                self._prune(task.lane)
                continue
            task.charged = path[-1].mean_s
            for node in path:
                node.running += 1
                node.inflight += task.charged / node.weight
            self.running += 1
            try:
                self.pool.submit(self._run, path, task)
            except RuntimeError:  # the pool is shut down: the server is stopping
                self._finished(path, task, 0.0)
                task.future.cancel()

    def _run(self, path: list[_Node], task: _Task) -> None:
        started = time.perf_counter()
        if task.future.set_running_or_notify_cancel():
            _current.lane = task.lane
            try:
                result = task.call()
            except BaseException as exc:  # the caller's to see, as the pool would give it
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            finally:
                _current.lane = None
        with self._lock:
            self._finished(path, task, time.perf_counter() - started)
            self._pump()

    def _finished(self, path: list[_Node], task: _Task, seconds: float) -> None:
        owner = task.lane.owner
        self.seconds[owner] = self.seconds.get(owner, 0.0) + seconds
        for node in path:
            node.running -= 1
            node.inflight -= task.charged / node.weight
            node.served += seconds / node.weight
            node.mean_s += _MEAN_WEIGHT * (seconds - node.mean_s)
        self.running -= 1
        self._prune(task.lane)
