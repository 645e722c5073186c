"""Slow peers are cut after their timeouts: a connection that sends no request (or a part
of one), an upload that trickles, a stream reader that trickles, and streams that never read,
from several addresses; meanwhile everyone else is served."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from augstream import Client, RetryPolicy
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.proxy import CuttingProxy

pytestmark = pytest.mark.slow

QUICK = RetryPolicy(attempts=8, backoff_s=0.01, max_backoff_s=0.1)


@contextlib.contextmanager
def _server(root: Path, **settings: Any) -> Iterator[tuple[BackgroundServer, Any]]:
    app = create_app(Settings(datasets=[root], threads=2, heartbeat_s=0.3, **settings))
    with BackgroundServer(app) as server:
        yield server, app.state.augstream


def _closed_after(sock: socket.socket, limit: float = 30.0) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock``, and what it said first."""
    started, said = time.monotonic(), b""
    sock.settimeout(limit)
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            said += data
    return time.monotonic() - started, said


def _trickle(sock: socket.socket, data: bytes, every_s: float) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(OSError):
            for byte in data:
                time.sleep(every_s)
                sock.send(bytes([byte]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_connection_slow_to_send_its_headers_is_closed(
    odd_root: Path, counts: dict[str, Any]
) -> None:
    request = b"GET /v1/datasets HTTP/1.1\r\nHost: x\r\n\r\n"
    with _server(odd_root, header_timeout_s=1.0) as (server, _):
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        socks[1].sendall(b"POST /v1/str")  # part of a request line, then nothing
        _trickle(socks[2], request, every_s=0.25)  # a byte every 0.25 s: 10 s for all
        results: dict[int, tuple[float, bytes]] = {}
        threads = [
            threading.Thread(target=lambda i=i: results.update({i: _closed_after(socks[i])}))
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        # Meanwhile a client that sends its request at once is answered.
        assert httpx.get(f"{server.url}/v1/datasets", timeout=5).status_code == 200
        for thread in threads:
            thread.join(30)
        for sock in socks:
            sock.close()
    for seconds, said in results.values():
        assert 0.8 <= seconds < 5.0
        assert said.startswith(b"HTTP/1.1 408 ")
    counts.update(header_timeout_s=1.0, closed_after_s=[round(r[0], 1) for r in results.values()])


def _npy(size: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(size, dtype=np.uint8))
    return buffer.getvalue()


def test_trickling_uploads_are_cut_and_free_the_upload_slots(
    odd_root: Path, counts: dict[str, Any]
) -> None:
    data = _npy(4000)
    digest = hashlib.sha256(data).hexdigest()
    head = (
        f"PUT /v1/arrays/{digest} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with _server(odd_root, body_timeout_s=1.5) as (server, _):
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        for sock in socks:  # the server's four upload slots, each sent a byte every 0.5 s
            sock.sendall(head + data[:100])
            _trickle(sock, data[100:], every_s=0.5)
        time.sleep(0.5)
        busy = httpx.put(f"{server.url}/v1/arrays/{digest}", content=data, timeout=10)
        results = [_closed_after(sock) for sock in socks]
        for sock in socks:
            sock.close()
        done = httpx.put(f"{server.url}/v1/arrays/{digest}", content=data, timeout=10)
    assert busy.status_code == 429  # the slots were held, for as long as the timeout
    for seconds, said in results:
        assert seconds < 5.0
        assert said.startswith(b"HTTP/1.1 408 ")
        assert b"bytes/s" in said  # the body says what was too slow
    assert done.status_code == 201
    counts.update(body_timeout_s=1.5, cut_after_s=[round(r[0], 1) for r in results])


SPEC = {"dataset": "odd", "target_size": [64, 64], "batch_size": 16, "seed": 4, "epochs": 1}


def test_a_trickling_reader_is_evicted_and_its_client_resumes(
    odd_root: Path, counts: dict[str, Any]
) -> None:
    # The first connection reads at 1 MiB/s: sixty times the old fixed floor (16 KiB/s,
    # under which it was never evicted) but below this server's 4 MiB/s. Once the socket
    # buffers between them are full (a few MiB on loopback) the server falls behind its
    # pace and, 1 s later, evicts it; the client resumes on a connection at full speed.
    spec = {**SPEC, "target_size": [128, 128], "dtype": "float32"}  # 3 MiB batches
    with _server(odd_root, send_timeout_s=1.0, min_read_rate=4 << 20) as (server, state):
        with Client(server.url) as client, client.stream(**spec) as stream:
            reference = [stream.next_batch(timeout=60) for _ in range(len(stream))]
        proxy = CuttingProxy(
            server.port, cut_after=lambda _: None, rate=lambda n: 1 << 20 if n == 0 else None
        )
        started = time.monotonic()
        try:
            with (
                Client(proxy.url, retry=QUICK, timeout=30) as client,
                client.stream(**spec) as stream,
            ):
                got = [stream.next_batch(timeout=60) for _ in range(len(stream))]
                reconnects = stream.reconnects
        finally:
            proxy.close()
        seconds = time.monotonic() - started
        evicted = state.metrics.error_counts().get("stalled_client_evicted", 0)
    assert evicted >= 1 and reconnects >= 1, (evicted, reconnects)
    assert [(b.epoch, b.index, b.sample_ids) for b in got] == [
        (b.epoch, b.index, b.sample_ids) for b in reference
    ]
    assert all(np.array_equal(a.x, b.x) for a, b in zip(got, reference, strict=True))
    counts.update(evicted=evicted, reconnects=reconnects, seconds=round(seconds, 1))


def _open_stream(port: int, source: str, spec: dict[str, Any]) -> socket.socket:
    body = json.dumps(spec).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def test_streams_that_never_read_are_evicted_from_every_slot(
    odd_root: Path, counts: dict[str, Any]
) -> None:
    # 1.5 MiB batches, sent in pieces of 1 MiB: a stalled reader used to keep each piece's
    # time at 16 KiB/s (64 s) on top of the send timeout.
    spec = {**SPEC, "epochs": None, "batch_size": 32, "dtype": "float32"}
    with _server(odd_root, max_streams=16, send_timeout_s=1.0) as (server, state):
        socks = [
            _open_stream(server.port, f"127.0.0.{2 + n % 4}", spec) for n in range(16)
        ]  # four addresses, four streams each: every slot
        for sock in socks:
            sock.recv(1024)  # the stream started; from now on nothing is read
        started = time.monotonic()
        assert state.slots.active == 16
        while state.slots.active and time.monotonic() - started < 30:
            time.sleep(0.2)
        evicted_after = time.monotonic() - started
        assert state.slots.active == 0
        with Client(server.url) as client, client.stream(**SPEC) as stream:
            first = time.monotonic()
            assert stream.next_batch(timeout=30).x.shape == (16, 64, 64, 3)
            first_batch_s = time.monotonic() - first
        for sock in socks:
            sock.close()
    assert evicted_after < 10
    counts.update(
        streams=16, evicted_after_s=round(evicted_after, 1), first_batch_s=round(first_batch_s, 3)
    )
