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
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import queue
import select
import socket
import subprocess
import sys
import threading
import weakref
from collections import defaultdict
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import allocate_images, allocate_masks
from .making import make_samples
from .metrics import Metrics
from .shm import Blocks, SharedMemoryFullError, shm_free

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
#: Below this much free shared memory at start the server warns (a container's /dev/shm is
#: 64 MiB unless it is given more).
_SHM_WARN_BYTES = 1 << 30


class WorkerLostError(RuntimeError):
    """A worker process exited, or did not answer, while it had a batch's samples."""


class PoolClosedError(RuntimeError):
    """The server is stopping: its workers are gone and the batch is no longer wanted."""


class _Channel:
    """A pipe to a worker that one server thread uses at a time, with its poller (polled
    before each reply, for the timeout: ``Connection.poll`` builds a selector per call)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)

    def ready(self, timeout: float) -> bool:
        """Whether a reply (or the pipe's end) came within ``timeout`` seconds."""
        return bool(self._poller.poll(timeout * 1000))


class _Worker:
    """One worker process and its channels: a pipe per server thread that may make a batch at
    once, so the thread that sends a task reads its reply itself (no reader thread to hand it
    over, and no wake-up of one per reply)."""

    def __init__(self, index: int, count: int, settings_json: str, channels: int) -> None:
        self.index = index
        pairs = [socket.socketpair() for _ in range(channels)]
        theirs = [pair[1].fileno() for pair in pairs]
        # A program of its own (python -m augstream_service.workers), not multiprocessing's
        # spawn: that would import the parent's __main__ again in the child, and a script
        # that embeds the server without a __main__ guard would start itself anew.
        command = [sys.executable, "-m", "augstream_service.workers", ",".join(map(str, theirs))]
        self.process = subprocess.Popen(command, pass_fds=theirs)
        for _, their in pairs:
            their.close()
        # The sockets themselves are kept to shut them down: closing an fd does not wake a
        # thread blocked reading it (a server thread awaiting a reply, the worker's select).
        self._sockets = [ours for ours, _ in pairs]
        self._channels = [_Channel(Connection(os.dup(ours.fileno()))) for ours in self._sockets]
        self._free: queue.SimpleQueue[_Channel] = queue.SimpleQueue()
        for channel in self._channels:
            self._free.put(channel)
        # The settings (storage credentials among them) go over a pipe, not the command.
        self._channels[0].conn.send_bytes(pickle.dumps((settings_json, index, count)))
        #: Its cache figures as of its latest reply (numbered by the worker: each channel's
        #: replies are read by its own thread, in no order between channels).
        self.figures: dict[str, Any] = {}
        self._reported = -1
        self._lock = threading.Lock()
        #: Its pipe broke or it did not answer: it is started again before its next task.
        self.lost = False

    # Messages are plain tuples, pickled with pickle itself: Connection.send makes a
    # ForkingPickler per message, copying copyreg's dispatch table each time (a fifth of the
    # main process's GIL time at 40 batches per second).

    def send(self, task: tuple[Any, ...]) -> _Channel:
        """Send ``task`` on a free channel (waiting for one if every one is busy): the
        channel to read its reply from (``reply``), or to ``release`` unread."""
        channel = self._free.get()
        try:
            channel.conn.send_bytes(pickle.dumps(task))
        except (OSError, ValueError) as exc:
            self._free.put(channel)
            self.lost = True
            raise WorkerLostError(f"worker {self.index}: {exc}") from None
        return channel

    def reply(self, channel: _Channel, ident: int, timeout: float) -> tuple[Any, ...]:
        """The reply to task ``ident`` sent on ``channel``, which is then free again.

        A reply to another task is one its sender left unread (another worker failed first,
        ``release``): it is dropped."""
        try:
            while True:
                if not channel.ready(timeout):
                    self.lost = True  # hung: it is replaced, not asked again
                    raise WorkerLostError(f"worker process {self.index} did not answer in time")
                try:
                    reply: tuple[Any, ...] = pickle.loads(channel.conn.recv_bytes())
                except (EOFError, OSError):
                    self.lost = True
                    raise WorkerLostError(f"worker process {self.index} exited") from None
                if reply[1] == ident:
                    break
        finally:
            self._free.put(channel)
        if reply[0] == "done":
            with self._lock:
                if reply[6] > self._reported:
                    self._reported, self.figures = reply[6], reply[7]
        return reply

    def release(self, channel: _Channel) -> None:
        """``channel`` free again with its reply unread (the next reply read drops it)."""
        self._free.put(channel)

    @property
    def alive(self) -> bool:
        # Asked before every task: a worker that exits is seen at its next reply (its end of
        # the pipe closes), so no wait() system call is needed here.
        return not self.lost and self.process.returncode is None

    def stop(self) -> None:
        for ours in self._sockets:
            with contextlib.suppress(OSError):
                ours.shutdown(socket.SHUT_RDWR)  # the worker reads the end and exits
            ours.close()
        for channel in self._channels:
            channel.conn.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


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
        # A channel to each worker for every server thread that may make a batch at once.
        self._channels = max(1, settings.threads)
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

    def _start(self, index: int) -> _Worker:
        return _Worker(index, self.count, self._settings_json, self._channels)

    def _worker(self, index: int) -> _Worker:
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
        size = x_bytes + (math.prod(mask_shape) if mask_shape else 0)
        try:
            block = self._blocks.take(size)
        except SharedMemoryFullError as exc:
            return self._here(plan, epoch, ids, dtype, exc)
        base = np.ndarray((size,), dtype=np.uint8, buffer=block.buf)
        weakref.finalize(base, self._blocks.give, block)
        x = base[:x_bytes].view(dtype).reshape(x_shape)
        masks = None if mask_shape is None else base[x_bytes:].reshape(mask_shape)
        try:
            errors, seconds, crcs = self._dispatch(plan, epoch, ids, block.name, x, mask_shape)
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
        block: str,
        x: Array,
        mask_shape: tuple[int, ...] | None,
    ) -> tuple[list[str | None], float, list[int | None]]:
        owned: dict[int, list[int]] = defaultdict(list)
        for slot, sample_id in enumerate(ids):
            owned[sample_id % self.count].append(slot)
        key, spec_json, digest = plan.key, plan.spec_json, plan.source.digest()
        # Every part is sent before any reply is read: the workers make them at once.
        sent: list[tuple[list[int], _Worker, _Channel, int]] = []
        errors: list[str | None] = [None] * len(ids)
        crcs: list[int | None] = [None] * len(ids)
        seconds = 0.0
        tallies = []
        read = 0
        try:
            for index, slots in owned.items():
                ident = next(self._ids)
                task = (
                    ident, key, spec_json, plan.compact, digest, epoch,
                    [ids[s] for s in slots], slots, block, x.shape, x.dtype.str, mask_shape,
                )  # fmt: skip
                worker = self._worker(index)
                sent.append((slots, worker, worker.send(task), ident))
            for slots, worker, channel, ident in sent:
                read += 1  # ``reply`` frees its channel, whatever it finds
                reply = worker.reply(channel, ident, _TASK_TIMEOUT_S)
                if reply[0] != "done":
                    raise WorkerLostError(f"a worker process failed: {reply[2]}")
                for slot, error, crc in zip(slots, reply[2], reply[5], strict=True):
                    errors[slot], crcs[slot] = error, crc
                seconds += reply[3]
                tallies.append(reply[4])
        finally:
            # Given up before every reply was read: the channels of the others are free
            # again, their replies unread (dropped by the next reply read on them).
            for _, worker, channel, _ in sent[read:]:
                worker.release(channel)
        self._count(tallies)
        return errors, seconds, crcs

    def _count(self, tallies: list[dict[str, Any]]) -> None:
        """The workers' stage timings, as one observation per stage for the batch (the
        workers' seconds added up, as one thread's would be), and their errors."""
        if self.metrics is None:
            return
        stages: dict[str, float] = defaultdict(float)
        for tally in tallies:
            for stage, seconds in tally["observed"]:
                stages[stage] += seconds
            for kind, count in tally["errors"].items():
                self.metrics.error(kind, count)
        for stage, seconds in stages.items():
            self.metrics.observe(stage, seconds)

    def figures(self, own: dict[str, Any]) -> dict[str, Any]:
        """``own`` (the main process's reader figures) plus every worker's last report."""
        total = {**own, "images": dict(own["images"]), "bytes": dict(own["bytes"])}
        for worker in self._workers:
            found = worker.figures
            if not found:
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
        for worker in workers:
            worker.stop()
        self._blocks.close()
