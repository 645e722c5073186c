"""A worker process of the server (``processes``): it makes the samples it is sent, reading,
decoding and augmenting them into a shared-memory block the main process made.

Each worker builds its own catalog, upload store and reader (with its share of the caches)
from the server's settings, so it holds a GIL, a heap and a cache of its own; it makes the
samples whose ids it owns (``sample id % workers``), so every image is decoded and cached by
one worker only. It makes several tasks at once in ``worker_threads`` threads (OpenCV
releases the GIL while it decodes and warps). It keeps the plans it was sent (by their key)
and checks, before it makes a plan's samples, that it reads the same listing as the main
process (``Samples.digest``).
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import selectors
import sys
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .reports import STAGES, FiguresBoard, outcome_at

__all__ = ["Task", "main", "run"]

log = logging.getLogger("augstream.workers")

#: Plans and shared-memory blocks a worker keeps (least recently used go first).
_PLANS = 256
_BLOCKS = 64

#: A task: (task id, plan key, spec JSON, compact, digest, epoch, the batch's ids, block
#: name, images' shape, images' dtype, masks' shape or None). Every owner of some of the ids
#: is sent the same task and makes the ids it owns.
Task = tuple[int, str, str, bool, str, int, list[int], str, tuple[int, ...], str, Any]


class _Tally:
    """Stage timings and error counts a worker's reader reports: the timings go into each
    batch's outcome (``reports.Outcome``), the counts, seldom any, in a reply."""

    def __init__(self) -> None:
        #: Seconds by stage, in ``reports.STAGES``' order (the server observes each stage's
        #: sum once for the batch).
        self.observed = [0.0] * len(STAGES)
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()  # the worker's threads report at once

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.observed[STAGES.index(stage)] += seconds

    def error(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + count

    def taken(self) -> tuple[list[float], dict[str, int]]:
        with self._lock:
            found = self.observed, self.errors
            self.observed, self.errors = [0.0] * len(STAGES), {}
        return found


def _attach(name: str) -> mmap.mmap:
    """The main process's block ``name``, mapped here (POSIX shared memory lives under
    /dev/shm on Linux). Mapped directly rather than through ``SharedMemory``, whose
    resource tracker would count the block as this process's and unlink it when it exits."""
    fd = os.open(f"/dev/shm/{name.lstrip('/')}", os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """``python -m augstream_service.workers FD,FD,...:FD,FD,...``: a worker on the sockets
    its server passed it, a pipe and an announcing socket per lane (a server thread's); the
    first message, on the first pipe, is its settings, its index, the number of workers and
    the name of the block its cache figures go on."""
    pipes, announcing = argv[0].split(":")
    conns = [Connection(int(fd)) for fd in pipes.split(",")]
    dones = [int(fd) for fd in announcing.split(",")]
    try:
        settings_json, index, count, board = pickle.loads(conns[0].recv_bytes())
    except (EOFError, OSError):
        return 1
    run(conns, dones, settings_json, index, count, board)
    return 0


def run(
    conns: list[Connection],
    dones: list[int],
    settings_json: str,
    index: int,
    count: int,
    board_name: str,
) -> None:
    """A worker's life: set up from the settings, then make what it is sent, writing each
    part's outcome into its block (and a reply on the pipe the task came by when there is
    more to say) and announcing it on its lane's socket, until a pipe closes (the server is
    stopping)."""
    import cv2

    from augstream_protocol.spec import StreamSpec
    from augstream_protocol.wire import ROW_CRCS, crc32

    from .making import make_samples
    from .pipeline import StreamPlan, make_plan
    from .reader import ImageReader
    from .runners import Runners
    from .settings import Settings, worker_threads
    from .wiring import catalog_from, limits_from, uploads_from
    from .workerhandle import announcement, owned_slots

    # The worker's threads are its cores: OpenCV's own threads would only oversubscribe.
    cv2.setNumThreads(1)
    settings = Settings.model_validate_json(settings_json)
    catalog = catalog_from(settings)
    tally = _Tally()
    reader = ImageReader(
        # A part of the caches each, and one for the server process (``app.create_app``).
        settings.byte_cache_bytes // (count + 1),
        settings.image_cache_bytes // (count + 1),
        tally,
    )
    uploads, limits = uploads_from(settings), limits_from(settings)
    plans: OrderedDict[str, StreamPlan] = OrderedDict()
    blocks: OrderedDict[str, mmap.mmap] = OrderedDict()
    board = FiguresBoard(_attach(board_name), count)

    # The worker's threads share its plans and mapped blocks.
    held = threading.Lock()
    # Two threads may reply on one channel at once: the server gives a channel a task while
    # an earlier one it gave up is still being made; and they write one row of figures.
    sending = threading.Lock()

    def plan_for(key: str, spec_json: str, compact: bool, digest: str) -> StreamPlan:
        with held:
            return _plan_for(key, spec_json, compact, digest)

    def _plan_for(key: str, spec_json: str, compact: bool, digest: str) -> StreamPlan:
        plan = plans.get(key)
        if plan is not None:
            plans.move_to_end(key)
            return plan
        spec = StreamSpec.model_validate_json(spec_json)
        plan = make_plan(spec, catalog, uploads, limits, reader, compact=compact)
        if plan.source.digest() != digest and spec.dataset is not None:
            # The main process listed the dataset again since this worker did.
            catalog.get(spec.dataset).refresh()
            plan = make_plan(spec, catalog, uploads, limits, reader, compact=compact)
        if plan.source.digest() != digest:
            raise RuntimeError(
                f"worker {index} lists {plan.source.name!r} differently from the server"
            )
        plans[key] = plan
        while len(plans) > _PLANS:
            plans.popitem(last=False)
        return plan

    def block(name: str) -> mmap.mmap:
        with held:
            found = blocks.get(name)
            if found is None:
                found = blocks[name] = _attach(name)
                while len(blocks) > _BLOCKS:
                    # A thread may still write into it: closing an mmap with views
                    # exported fails, so an old block is dropped and unmapped when the
                    # last array viewing it is gone.
                    blocks.popitem(last=False)
            blocks.move_to_end(name)
            return found

    def made(task: Task, lane: int) -> bool:
        """Makes this worker's part of ``task``, writes its outcome into the block (and a
        reply on ``lane``'s pipe if a sample failed or an error was counted) and announces
        it on ``lane``'s socket; False once the pipe is closed."""
        ident = task[0]
        reply: tuple[Any, ...] | None = None
        try:
            _, key, spec_json, compact, digest, epoch, every, name, shape, dtype, masks = task
            slots = owned_slots(every, count).get(index, [])
            ids = [every[slot] for slot in slots]
            plan = plan_for(key, spec_json, compact, digest)
            buffer = block(name)
            x = np.ndarray(shape, dtype=dtype, buffer=buffer)
            mask_view = None
            if masks is not None:
                mask_view = np.ndarray(masks, dtype=np.uint8, buffer=buffer, offset=x.nbytes)
            errors, seconds = make_samples(plan.spec, plan.source, epoch, ids, x, mask_view, slots)
            # Each sample's CRC-32 while its bytes are in this core's cache: the server
            # combines them into the frame's instead of reading the whole batch again.
            crcs = [
                crc32(x[slot]) if error is None and ROW_CRCS else None
                for slot, error in zip(slots, errors, strict=True)
            ]
            observed, counted = tally.taken()
            outcome = outcome_at(shape, dtype, masks, count)
            outcome.write(buffer, index, slots, crcs, [seconds, *observed])
            if counted or any(error is not None for error in errors):
                reply = ("done", ident, errors, counted)
        except Exception as exc:  # reported to the main process, which makes it itself
            log.exception("worker %d could not make task %d", index, ident)
            reply = ("failed", ident, f"{type(exc).__name__}: {exc}")
        try:
            with sending:
                board.write(index, reader.figures())
                if reply is not None:
                    conns[lane].send_bytes(pickle.dumps(reply))
                # After the outcome and the reply: the server reads them once every owner
                # has announced.
                os.write(dones[lane], announcement(ident, index, reply is not None))
        except OSError:  # the server closed the pipe (it is stopping): nobody is waiting
            return False
        return True

    # One thread: the tasks are made in the loop. More: a task per free thread, several
    # batches' parts at once (the main process has a batch in flight per thread of its own).
    threads = worker_threads(settings)
    pool = Runners(threads, "augstream-worker") if threads > 1 else None
    waiting = selectors.DefaultSelector()
    for lane, conn in enumerate(conns):
        waiting.register(conn.fileno(), selectors.EVENT_READ, lane)

    def serve() -> None:
        while True:
            for key, _ in waiting.select():
                try:
                    task: Task = pickle.loads(conns[key.data].recv_bytes())
                except (EOFError, OSError):
                    return
                if pool is None:
                    if not made(task, key.data):
                        return
                else:
                    pool.submit(made, task, key.data)

    serve()
    waiting.close()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
