"""Worker processes that make batches' samples, so one server uses every core of a big box.

A server process runs Python under one GIL: on a box of 16-64 cores it cannot make images
as fast as the cores could. With ``processes`` set, each batch's samples are split among
worker processes (``workers.run``), sample ``i`` to worker ``i % processes``, so one stream
(one batch, even) uses all of them, and each worker decodes and caches only its own share of
the images (the caches' memory is the same as one process's). A worker writes the samples
straight into a shared-memory block (``shm``); the main process's arrays view the batch
there, and it labels, standardises, mixes, encodes and sends it as before: the bytes are the
threads' bytes. The block returns to the pool once no array views it. A worker that dies is
started again; the batches it had are made in the main process meanwhile.

A batch is one task, pickled once and sent to each owner of some of its samples; each owner
announces its part made on a socket all the workers share (one per server thread), and the
server thread sleeps in one ``recv`` until every announcement is there: it runs again once
per batch, however many workers it waited on (after a sleep the Python that runs next is
slow, its caches cold: a wake-up per worker would pay that once per worker). What the owners
made is read from the block (``reports``): each image's CRC-32 and each owner's seconds; a
reply is read only from an owner that announced one (a sample of its failed, or it did).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import queue
import socket
import struct
import threading
import time
import weakref
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import allocate_images, allocate_masks
from .making import make_samples
from .metrics import Metrics
from .openfiles import ensure_open_files
from .reports import STAGES, FiguresBoard, Outcome, outcome_at
from .shm import Blocks, SharedMemoryFullError, shm_free
from .workerhandle import ANNOUNCEMENT, Worker, WorkerLostError, announced, owned_slots

if TYPE_CHECKING:
    from .pipeline import StreamPlan
    from .settings import Settings

__all__ = ["PoolClosedError", "ProcessPool", "WorkerLostError"]

log = logging.getLogger("augstream.processes")

Array = np.ndarray[Any, Any]
#: A batch's samples as made: images, masks, each sample's error, seconds augmenting, and
#: each image's CRC-32 (None: not computed).
Made = tuple[Array, Array | None, list[str | None], float, list[int | None] | None]

#: Longest wait for a worker's part of a batch before the main process makes it itself.
_TASK_TIMEOUT_S = 300.0
#: How often a batch's wait looks whether a worker it waits on has exited.
_LOOK_S = 0.5
#: Below this much free shared memory at start the server warns (a container's /dev/shm is
#: 64 MiB unless it is given more).
_SHM_WARN_BYTES = 1 << 30


class PoolClosedError(RuntimeError):
    """The server is stopping: its workers are gone and the batch is no longer wanted."""


class ProcessPool:
    """``count`` worker processes for the app built from ``settings`` (its catalog must come
    from the settings: each worker builds its own)."""

    def __init__(self, settings: Settings, count: int, metrics: Metrics | None = None) -> None:
        if not os.path.isdir("/dev/shm"):
            raise ValueError("processes > 0 needs POSIX shared memory in /dev/shm (Linux)")
        self.count = count
        self.metrics = metrics
        self._settings_json = settings.model_dump_json()
        self._blocks = Blocks()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # A lane for every server thread that may make a batch at once: a pipe to each
        # worker, and the socket every worker announces its part of the lane's batch done
        # on. The server keeps the workers' ends too, for the workers it starts again.
        lanes = max(1, settings.threads)
        # A pipe per worker and lane, a socket pair per lane, and each worker's ends of its
        # lanes' pipes while it starts.
        ensure_open_files(lanes * (count + 3), f"processes={count} with threads={lanes}")
        pairs = [socket.socketpair() for _ in range(lanes)]
        self._done = [ours for ours, _ in pairs]
        self._theirs = [theirs for _, theirs in pairs]
        # A batch's wait sleeps in recv until all its announcements came, but looks at the
        # workers now and then (one that died announces nothing).
        look = struct.pack("ll", int(_LOOK_S), int(_LOOK_S % 1 * 1e6))
        for done in self._done:
            done.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, look)
        self._unread = [b""] * lanes
        self._lanes: queue.SimpleQueue[int] = queue.SimpleQueue()
        for lane in range(lanes):
            self._lanes.put(lane)
        self._board_block = SharedMemory(create=True, size=FiguresBoard.size(count))
        self._board = FiguresBoard(self._board_block.buf, count)
        self._workers = [self._start(i) for i in range(count)]
        self.restarts = 0
        self._closed = False
        self._told_full = False
        free = shm_free()
        if free < _SHM_WARN_BYTES:
            log.warning(
                "/dev/shm has %d MiB free: worker processes pass batches through it, and a "
                "batch that finds no room is made in the server process (slower); give the "
                "container more (docker run --shm-size, compose shm_size, a Memory emptyDir "
                "at /dev/shm)",
                free >> 20,
            )

    def _start(self, index: int) -> Worker:
        done = [theirs.fileno() for theirs in self._theirs]
        self._board.clear(index)
        board = self._board_block.name
        return Worker(index, self.count, self._settings_json, len(done), done, board)

    def _worker(self, index: int) -> Worker:
        with self._lock:
            if self._closed:
                raise PoolClosedError("the server is stopping")
            worker = self._workers[index]
            if not worker.alive:
                log.warning("worker process %d was lost; starting it again", index)
                worker.stop()
                worker = self._workers[index] = self._start(index)
                self.restarts += 1
            return worker

    def make(self, plan: StreamPlan, epoch: int, ids: list[int], dtype: str) -> Made:
        """A batch's samples made by the workers that own them (a ``StreamPlan.maker``): its
        images (and masks) in a shared-memory block, which returns to the pool when the last
        array viewing it is gone (after the batch is sent, or dropped from a cache), and
        each image's CRC-32 as its worker computed it (None when made here)."""
        spec = plan.spec
        height, width = spec.target_size
        x_shape = (len(ids), height, width, spec.channels)
        x_bytes = math.prod(x_shape) * np.dtype(dtype).itemsize
        mask_shape = (len(ids), height, width, 1) if spec.class_mode == "mask" else None
        outcome = outcome_at(x_shape, dtype, mask_shape, self.count)
        size = outcome.end
        try:
            block = self._blocks.take(size)
        except SharedMemoryFullError as exc:
            return self._here(plan, epoch, ids, dtype, exc)
        base = np.ndarray((size,), dtype=np.uint8, buffer=block.buf)
        weakref.finalize(base, self._blocks.give, block)
        x = base[:x_bytes].view(dtype).reshape(x_shape)
        if mask_shape is None:
            masks = None
        else:
            masks = base[x_bytes : x_bytes + math.prod(mask_shape)].reshape(mask_shape)
        try:
            made = self._dispatch(plan, epoch, ids, block.name, base, x, mask_shape, outcome)
            errors, seconds, crcs = made
        except WorkerLostError as exc:
            if self._closed:  # stopped under it: the stream that wanted it is gone
                raise PoolClosedError("the server is stopping") from exc
            log.warning("%s: the batch is made in the server process", exc)
            errors, seconds = make_samples(spec, plan.source, epoch, ids, x, masks, range(len(ids)))
            crcs = None
        return x, masks, errors, seconds, crcs

    def _here(
        self, plan: StreamPlan, epoch: int, ids: list[int], dtype: str, why: Exception
    ) -> Made:
        """The batch made in this process, in ordinary memory (shared memory is full)."""
        if not self._told_full:
            self._told_full = True
            log.warning(
                "%s (%d MiB free): batches that find no room are made in the server process "
                "until there is; give the container more shared memory",
                why,
                shm_free() >> 20,
            )
        spec = plan.spec
        x = allocate_images(len(ids), spec, dtype)
        masks = allocate_masks(len(ids), spec) if spec.class_mode == "mask" else None
        errors, seconds = make_samples(spec, plan.source, epoch, ids, x, masks, range(len(ids)))
        return x, masks, errors, seconds, None

    def _dispatch(
        self,
        plan: StreamPlan,
        epoch: int,
        ids: list[int],
        name: str,
        block: Array,
        x: Array,
        mask_shape: tuple[int, ...] | None,
        outcome: Outcome,
    ) -> tuple[list[str | None], float, list[int | None]]:
        owned = owned_slots(ids, self.count)
        ident = next(self._ids)
        # One task for every owner (each makes the ids it owns), pickled once; each worker
        # announces its part done on the lane's socket, and the thread sleeps until the last
        # has: one wake-up per batch, not one per worker.
        task = pickle.dumps((
            ident, plan.key, plan.spec_json, plan.compact, plan.source.digest(), epoch, ids,
            name, x.shape, x.dtype.str, mask_shape,
        ))  # fmt: skip
        errors: list[str | None] = [None] * len(ids)
        counted = []
        lane = self._lanes.get()
        try:
            sent = []
            for index in owned:
                worker = self._worker(index)
                worker.send(lane, task)
                sent.append(worker)
            for worker in self._await(lane, ident, sent):
                reply = worker.reply(lane, ident)
                if reply[0] != "done":
                    raise WorkerLostError(f"a worker process failed: {reply[2]}")
                for slot, error in zip(owned[worker.index], reply[2], strict=True):
                    errors[slot] = error
                counted.append(reply[3])
        finally:
            # Given up before every reply was read: the lane is free again, with replies
            # and announcements the next batch on it drops (they name another task).
            self._lanes.put(lane)
        # What the owners made (each image's CRC-32), and their seconds augmenting, then
        # reading and decoding (``reports.STAGES``).
        crcs, seconds = outcome.read(block, owned)
        self._count(seconds[1:], counted)
        return errors, seconds[0], crcs

    def _await(self, lane: int, ident: int, workers: list[Worker]) -> list[Worker]:
        """Sleep until each of ``workers`` announced its part of task ``ident`` done on
        ``lane``'s socket, and say which of them sent a reply; a worker that exited
        meanwhile, or did not answer in ``_TASK_TIMEOUT_S``, is lost."""
        waiting = {worker.index: worker for worker in workers}
        replied = []
        done, size = self._done[lane], ANNOUNCEMENT.size
        deadline = time.monotonic() + _TASK_TIMEOUT_S
        while waiting:
            want = size * len(waiting) - len(self._unread[lane])
            try:
                # Every announcement still awaited, in one call: the kernel wakes the thread
                # for each, Python runs once they are all there (or at a look).
                fresh = done.recv(want, socket.MSG_WAITALL)
            except BlockingIOError:  # the look came and nothing with it
                fresh = None
            except OSError:  # the pool closed the socket under the wait
                fresh = b""
            if fresh == b"":  # its end: the pool is closing
                raise WorkerLostError("the server is stopping")
            got = self._unread[lane] + (fresh or b"")
            whole = len(got) - len(got) % size
            self._unread[lane] = got[whole:]
            for task, index, with_reply in announced(got[:whole]):
                worker = waiting.pop(index, None) if task == ident else None
                if worker is not None and with_reply:  # others are from batches given up
                    replied.append(worker)
            if waiting and (fresh is None or len(fresh) < want):  # a look: still there?
                for worker in waiting.values():
                    if worker.exited():
                        worker.lost = True
                        raise WorkerLostError(f"worker process {worker.index} exited")
                if time.monotonic() > deadline:
                    for worker in waiting.values():
                        worker.lost = True  # hung: it is replaced, not asked again
                    raise WorkerLostError("a worker process did not answer in time")
        return replied

    def _count(self, seconds: list[float], counted: list[dict[str, int]]) -> None:
        """The workers' stage timings, as one observation per stage for the batch (the
        workers' seconds added up, as one thread's would be), and their errors."""
        if self.metrics is None:
            return
        for stage, spent in zip(STAGES, seconds, strict=True):
            if spent > 0:  # timed by some owner (a warm batch neither reads nor decodes)
                self.metrics.observe(stage, spent)
        for errors in counted:
            for kind, count in errors.items():
                self.metrics.error(kind, count)

    def figures(self, own: dict[str, Any]) -> dict[str, Any]:
        """``own`` (the main process's reader figures) plus every worker's latest."""
        total = {**own, "images": dict(own["images"]), "bytes": dict(own["bytes"])}
        for index in range(self.count):
            found = self._board.read(index)
            if found is None:
                continue
            for key in ("decodes", "store_reads"):
                total[key] += found[key]
            for cache in ("images", "bytes"):
                for name, value in found[cache].items():
                    total[cache][name] = total[cache].get(name, 0) + value
        total["processes"] = self.count
        return total

    def close(self) -> None:
        """Stop the workers and free the shared memory."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for done in self._done:
            with contextlib.suppress(OSError):
                done.shutdown(socket.SHUT_RDWR)  # a batch's wait ends at once
        for worker in workers:
            worker.stop()
        for sock in (*self._done, *self._theirs):
            sock.close()
        self._blocks.close()
        self._board.close()
        self._board_block.close()
        with contextlib.suppress(FileNotFoundError):  # closed before
            self._board_block.unlink()
