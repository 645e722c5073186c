"""Clients that vanish at any point of a stream leave nothing behind on the server: no
producer running, and its threads, file descriptors and memory back at their baseline."""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from augstream import Client
from tests.reliability.conftest import ServerProcess

pytestmark = pytest.mark.slow

SPEC = {
    "dataset": "odd",
    "target_size": [96, 96],
    "batch_size": 8,
    "dtype": "float32",
    "rotation_range": 10,
}
BATCH_BYTES = 8 * 96 * 96 * 3 * 4
#: The batch cache: the dropped streams' batches stay in it (bounded), as any stream's do.
BATCH_CACHE = 16 << 20


def _drop_after(port: int, budget: int, rng: random.Random) -> None:
    """Ask for an endless stream over a raw socket, read ``budget`` bytes, then vanish:
    half the time politely (FIN), half abruptly (RST)."""
    body = json.dumps({**SPEC, "seed": rng.randrange(1000)}).encode()
    request = (
        f"POST /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = 0
        while received < budget:
            chunk = sock.recv(min(65536, budget - received))
            if not chunk:
                break
            received += len(chunk)
        if rng.random() < 0.5:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_two_hundred_dropped_streams_leave_nothing_behind(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root, AUGSTREAM_BATCH_CACHE_BYTES=str(BATCH_CACHE)).start()
    with Client(server.url) as client:  # warm up: pools, caches, imports
        for seed in range(3):
            with client.stream(**{**SPEC, "seed": seed}) as stream:
                for _ in range(6):
                    stream.next_batch(timeout=60)
    server.wait_idle()
    time.sleep(1.0)
    before = server.figures()
    rng = random.Random(1)
    # Anywhere from before the status line to several batches in, mid-frame mostly.
    budgets = [rng.randrange(0, 6 * BATCH_BYTES) for _ in range(200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: _drop_after(server.port, b, random.Random(b)), budgets))
    server.wait_idle()
    time.sleep(1.0)
    after = server.settled_figures(before)
    counts.update(
        streams_dropped=len(budgets),
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
    )
    assert after["fds"] <= before["fds"] + 2
    assert after["threads"] <= before["threads"] + 2
    assert after["rss_mib"] <= before["rss_mib"] + 64 + BATCH_CACHE // 2**20
    with Client(server.url) as client, client.stream(**{**SPEC, "seed": 1}) as stream:
        assert stream.next_batch(timeout=60).x.shape == (8, 96, 96, 3)  # it still serves
