"""(g) The transport alone: ready batch frames over loopback HTTP, through the server's
streaming response and the client library, next to a raw TCP socket moving as many bytes.

The HTTP side runs in its own process (``python -m benchmarks.comparison.transport
PORT``): the product's ``stream_frames`` and ``FrameStreamResponse`` on uvicorn, with a plan
whose batches are a fixed array (frames are still encoded, checksummed and decoded).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI

from augstream import Client
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import encode_batch
from augstream_service.limits import Limits
from augstream_service.pipeline import EncodedBatch, StreamPlan
from augstream_service.producer import FrameStreamResponse, stream_frames
from augstream_service.samples import RowSamples
from augstream_service.server import DrainingServer, server_config

from .timing import Figures
from .work import BATCH, SIZE

__all__ = ["READY_SPEC", "http_transport", "raw_socket"]

#: A stream of ready uint8 batches (the array digest is never looked up).
READY_SPEC: dict[str, Any] = {
    "arrays": {"x": "0" * 64},
    "class_mode": "none",
    "target_size": (SIZE, SIZE),
    "batch_size": BATCH,
    "shuffle": False,
    "seed": 0,
}


@dataclass(frozen=True)
class _ReadyPlan(StreamPlan):
    """A plan whose every batch is the same ready array: no reading, decoding, augmenting."""

    x: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, np.uint8))

    def encode_batch(self, epoch: int, batch: int) -> EncodedBatch:
        ids = list(range(batch * len(self.x), (batch + 1) * len(self.x)))
        return EncodedBatch(encode_batch(epoch, batch, ids, {"x": self.x}), len(self.x))


def _app(batches: int) -> FastAPI:
    app = FastAPI()
    pool = ThreadPoolExecutor(2)
    x = np.random.default_rng(0).integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)

    @app.post("/v1/stream")
    async def stream(spec: StreamSpec) -> FrameStreamResponse:
        rows = np.arange(batches * BATCH, dtype=np.int64)
        source = RowSamples(spec, rows, [], None, x=np.zeros((1, 1, 1, 3), np.uint8))
        plan = _ReadyPlan(spec=spec, source=source, limits=Limits(), x=x)
        frames = stream_frames(plan, pool, prefetch=4, heartbeat_s=5.0)
        return FrameStreamResponse(frames, on_close=lambda: None)

    return app


def http_transport(url: str, batches: int) -> Figures:
    """MB/s of batch payload (the images) delivered as NumPy arrays by the client."""
    with Client(url) as client, client.stream(**READY_SPEC, epochs=1) as stream:
        stream.next_batch(timeout=60)  # connection and first frame: not timed
        nbytes = 0
        started = time.perf_counter()
        for _ in range(batches - 1):
            nbytes += stream.next_batch(timeout=60).x.nbytes
        return Figures((batches - 1) * BATCH, time.perf_counter() - started, nbytes)


def raw_socket(nbytes: int, chunk: int = BATCH * SIZE * SIZE * 3) -> Figures:
    """MB/s of ``nbytes`` sent with ``sendall`` and read with ``recv_into`` over loopback."""
    payload = memoryview(bytes(chunk))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def send() -> None:
            connection, _ = listener.accept()
            with connection:
                left = nbytes
                while left > 0:
                    connection.sendall(payload[: min(chunk, left)])
                    left -= chunk

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        with socket.create_connection(("127.0.0.1", port)) as receiver:
            received = 0
            started = time.perf_counter()
            while received < nbytes:
                got = receiver.recv_into(view)
                if not got:
                    break
                received += got
            seconds = time.perf_counter() - started
        sender.join()
    return Figures(0, seconds, received)


def main() -> None:
    port, batches = int(sys.argv[1]), int(sys.argv[2])
    DrainingServer(server_config(_app(batches), "127.0.0.1", port, "warning")).run()


if __name__ == "__main__":
    main()
