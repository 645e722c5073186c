"""Slow and stalled readers: a client reading at 64 KiB/s costs the server no more than its
prefetch of batches; a client that stops reading is evicted and its slot freed."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from augstream import Client
from tests.reliability.conftest import ServerProcess

pytestmark = pytest.mark.slow

BIG = {
    "dataset": "odd",
    "target_size": [128, 128],
    "batch_size": 32,
    "dtype": "float32",
    "seed": 3,
    "rotation_range": 10,
}
BIG_BATCH = 32 * 128 * 128 * 3 * 4
PREFETCH = 4  # the server's default
RATE = 64 << 10  # bytes per second


def _open(port: int, spec: dict[str, Any]) -> socket.socket:
    body = json.dumps(spec).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.sendall(
        f"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def test_a_slow_reader_costs_at_most_its_prefetch(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root).start()
    with Client(server.url) as client, client.stream(**{**BIG, "seed": 1}) as stream:
        for _ in range(8):  # warm up with the same batch shape
            stream.next_batch(timeout=60)
    server.wait_idle()
    time.sleep(0.5)
    baseline = server.figures()["rss_mib"]
    peak, read = baseline, 0
    with _open(server.port, BIG) as sock:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < 8.0:
            allowed = int(RATE * elapsed) - read  # keep to 64 KiB/s on average
            if allowed > 0:
                read += len(sock.recv(min(allowed, 16 << 10)))
            peak = max(peak, server.figures()["rss_mib"])
            time.sleep(0.05)
        assert server.active_streams() == 1  # slow, but not evicted
    bound = PREFETCH * BIG_BATCH // 2**20 + 16  # MiB: the prefetched batches and a margin
    counts.update(
        read_kib=read // 1024,
        seconds=8,
        rss_baseline_mib=baseline,
        rss_peak_mib=peak,
        bound_mib=baseline + bound,
    )
    assert peak - baseline <= bound


def _stop_reading(server: ServerProcess, sock: socket.socket) -> float:
    """Read the stream's first bytes, then nothing: the seconds until it is evicted."""
    sock.recv(1024)
    started = time.monotonic()
    while server.active_streams() and time.monotonic() - started < 60:
        time.sleep(0.2)
    assert server.active_streams() == 0
    return time.monotonic() - started


def test_a_reader_that_stops_is_evicted_and_its_slot_freed(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root, AUGSTREAM_SEND_TIMEOUT_S="2").start()
    small = {"dataset": "odd", "target_size": [24, 24], "batch_size": 4, "seed": 1}
    with _open(server.port, small) as sock:
        evicted_after = _stop_reading(server, sock)
    counts.update(evicted_after_s=round(evicted_after, 1), send_timeout_s=2)
    with Client(server.url) as client, client.stream(**small) as stream:
        assert stream.next_batch(timeout=60).x.shape == (4, 24, 24, 3)


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_stopped_reader_of_large_pieces_is_evicted_and_its_socket_let_go(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    """Large pieces are written straight to the socket (``directbody``): the unsent rest of
    one counts as unsent for the eviction, and the descriptor that waits to write it is
    closed with the connection, though the peer never reads again."""
    server = server_process(odd_root, AUGSTREAM_SEND_TIMEOUT_S="2").start()
    assert server.process is not None
    pid = server.process.pid
    with Client(server.url) as client, client.stream(**BIG) as stream:
        stream.next_batch(timeout=60)
    server.wait_idle()
    baseline = _descriptors(pid)
    with _open(server.port, BIG) as sock:
        evicted_after = _stop_reading(server, sock)
        started = time.monotonic()
        while _descriptors(pid) > baseline and time.monotonic() - started < 10:
            time.sleep(0.2)
        left = _descriptors(pid) - baseline
    counts.update(evicted_after_s=round(evicted_after, 1), descriptors_left=left)
    assert left <= 0
