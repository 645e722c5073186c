"""A shared server under the attacks of a careless or hostile lab member (issue 19): keys get
fair shares of the workers whatever their stream counts, memory stays within the budget, and a
normal stream starts at once while fits, previews and stalled streams fill their caps."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from augstream import Client
from benchmarks.comparison.work import SPEC as BENCHMARK
from tests.reliability.conftest import NO_CACHES, ServerProcess

pytestmark = pytest.mark.slow

KEYS = ["key-of-student-a", "key-of-student-b"]
#: The benchmark's work (decode, resize to 224, Keras-style augmentation), as uint8 so the
#: clients in this process do nothing but count (their CPU is the server's too).
WORK = {**BENCHMARK, "dataset": "odd", "rescale": None, "dtype": "uint8"}
MIB = 1 << 20
#: What the docs state the process holds beyond the budget (interpreter, libraries, slack).
OVERHEAD_MIB = 256


def _peak_mib(server: ServerProcess) -> int:
    """The server process's resident memory at its highest so far (VmHWM)."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) // 1024


def _open(port: int, spec: dict[str, Any], key: str | None = None) -> tuple[socket.socket, int]:
    """A stream request that is never read past its status line: (the socket, the status)."""
    body = json.dumps(spec).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    sock.sendall(
        f"POST /v1/stream HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = b""
    while b"\r\n" not in head:
        head += sock.recv(1)
    return sock, int(head.split()[1])


def _watch_peak(server: ServerProcess, seconds: float, check: Callable[[], None]) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(0.2)
    return _peak_mib(server)


def test_two_keys_get_half_the_images_each_whatever_their_stream_counts(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root, AUGSTREAM_API_KEYS=json.dumps(KEYS), **NO_CACHES).start()
    streams = [KEYS[0]] * 6 + [KEYS[1]]
    images = [0] * len(streams)  # one count per stream: each written by one thread only
    stop = threading.Event()
    errors: list[BaseException] = []

    def consume(index: int) -> None:
        try:
            with (
                Client(server.url, api_key=streams[index]) as client,
                client.stream(**{**WORK, "seed": index}) as stream,
            ):
                while not stop.is_set():
                    images[index] += len(stream.next_batch(timeout=60).sample_ids)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(streams))]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2.0)  # every stream busy
        before = list(images)
        time.sleep(6.0)
        after = list(images)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    got = Counter()
    for key, first, last in zip(streams, before, after, strict=True):
        got[key] += last - first
    share = got[KEYS[1]] / sum(got.values())
    counts.update(images_a=got[KEYS[0]], images_b=got[KEYS[1]], share_b=round(share, 3))
    assert 0.45 <= share <= 0.55, got


#: A batch whose making costs several times its size (noise on 2048 x 2048 float images):
#: about 460 MiB of the budget with its scratch.
HUGE = {
    "dataset": "odd",
    "target_size": [2048, 2048],
    "batch_size": 2,
    "dtype": "float32",
    "noise_std_range": [5.0, 20.0],
}
BUDGET = 1 << 30
MEMORY = {
    "AUGSTREAM_MEMORY_BUDGET_BYTES": str(BUDGET),
    "AUGSTREAM_MAX_IMAGE_PIXELS": str(1 << 20),
    # One address plays every attacker here: its share is the whole budget.
    "AUGSTREAM_MAX_MEMORY_SHARE_PER_KEY": "1",
}


def test_streams_that_never_read_huge_noisy_batches_stay_within_the_budget(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root, **MEMORY).start()
    opened = [_open(server.port, {**HUGE, "seed": seed}) for seed in range(8)]
    try:
        statuses = Counter(status for _, status in opened)
        peak = _watch_peak(server, 5.0, lambda: None)
        # A normal stream still starts: what the stalled ones hold leaves room for it.
        started = time.monotonic()
        with Client(server.url) as client, client.stream(**{**WORK, "seed": 1}) as stream:
            stream.next_batch(timeout=30)
        first_batch_s = time.monotonic() - started
        counts.update(
            admitted=statuses[200],
            refused=statuses[503],
            rss_peak_mib=peak,
            bound_mib=BUDGET // MIB + OVERHEAD_MIB,
            normal_first_batch_s=round(first_batch_s, 2),
        )
        assert peak <= BUDGET // MIB + OVERHEAD_MIB
        assert statuses[200] >= 1 and first_batch_s < 2.0
        refused = next(sock for sock, status in opened if status == 503)
        message = refused.recv(1 << 16).decode(errors="replace")
        assert "memory budget" in message and "memory_budget_bytes" in message
    finally:
        for sock, _ in opened:
            sock.close()


def test_concurrent_zca_fits_stay_within_the_budget(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    budget = 768 * MIB
    env = {**MEMORY, "AUGSTREAM_MEMORY_BUDGET_BYTES": str(budget), "AUGSTREAM_MAX_FITS": "8"}
    env["AUGSTREAM_MAX_FITS_PER_KEY"] = "8"
    server = server_process(odd_root, **env).start()
    # 2,048 features (32 x 64 grey): each fit's D x D matrices are 32 MiB; distinct seeds of
    # a sample make distinct fits (none answered from another's).
    spec = {"dataset": "odd", "target_size": [32, 64], "color_mode": "grayscale"}

    def fit(seed: int) -> httpx.Response:
        body = {"spec": {**spec, "zca_whitening": True}, "sample_size": 100, "seed": seed}
        return httpx.post(f"{server.url}/v1/stats", json=body, timeout=120)

    with ThreadPoolExecutor(6) as pool:
        answers = pool.map(fit, range(6))
        peak = _watch_peak(server, 1.0, lambda: None)
        statuses = Counter()
        for answer in answers:
            statuses[answer.status_code] += 1
            if answer.status_code == 503:
                assert "memory_budget_bytes" in answer.json()["message"]
    peak = max(peak, _peak_mib(server))
    counts.update(
        fitted=statuses[200], refused=statuses[503], rss_peak_mib=peak, bound_mib=768 + 256
    )
    assert statuses[200] >= 1 and statuses[200] + statuses[503] == 6
    assert peak <= budget // MIB + OVERHEAD_MIB


@pytest.fixture
def crowded(
    odd_root: Path, server_process: type[ServerProcess]
) -> Iterator[tuple[ServerProcess, dict[str, Any]]]:
    """A server whose fits, previews and stream slots one key fills: two long fits, eight
    heavy previews (two run, the others wait their turn), and its 16 streams that never
    read."""
    env = {
        "AUGSTREAM_API_KEYS": json.dumps(KEYS),
        "AUGSTREAM_MAX_FITS": "2",
        "AUGSTREAM_MAX_PREVIEWS": "2",
    }
    server = server_process(odd_root, **env).start()
    attacker = {"Authorization": f"Bearer {KEYS[0]}"}
    fits = {
        "spec": {"dataset": "odd", "target_size": [128, 128], "featurewise_center": True},
        "augment": True,
        "rounds": 40,
    }
    preview = {
        "spec": json.dumps(
            {"dataset": "odd", "target_size": [512, 512], "blur_sigma_range": [8, 8]}
        ),
        "rows": 8,
        "cols": 8,
    }
    pool = ThreadPoolExecutor(10)
    for seed in range(2):
        pool.submit(
            httpx.post,
            f"{server.url}/v1/stats",
            json={**fits, "seed": seed},
            headers=attacker,
            timeout=120,
        )
    for seed in range(8):
        pool.submit(
            httpx.get,
            f"{server.url}/v1/preview",
            params={**preview, "seed": str(seed)},
            headers=attacker,
            timeout=120,
        )
    stalled = [
        _open(server.port, {**WORK, "target_size": [128, 128], "seed": s}, KEYS[0])
        for s in range(16)
    ]
    time.sleep(2.0)  # all of it under way
    figures = httpx.get(f"{server.url}/v1/server", headers=attacker, timeout=10).json()
    try:
        yield server, figures
    finally:
        for sock, _ in stalled:
            sock.close()
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_normal_stream_starts_within_2_s_while_one_key_fills_every_cap(
    crowded: tuple[ServerProcess, dict[str, Any]], counts: dict[str, Any]
) -> None:
    server, figures = crowded
    kinds = figures["workers"]["kinds"]
    assert kinds["fit"]["running"] + kinds["preview"]["running"] >= 1, kinds
    assert figures["active_streams"] == 16
    user = {"Authorization": f"Bearer {KEYS[1]}"}
    started = time.monotonic()
    listed = httpx.get(f"{server.url}/v1/datasets", headers=user, timeout=30)
    listing_s = time.monotonic() - started
    assert listed.status_code == 200
    started = time.monotonic()
    with (
        Client(server.url, api_key=KEYS[1]) as client,
        client.stream(**{**WORK, "seed": 99}) as stream,
    ):
        stream.next_batch(timeout=60)
    first_batch_s = time.monotonic() - started
    counts.update(
        first_batch_s=round(first_batch_s, 2), datasets_s=round(listing_s, 2), kinds=kinds
    )
    assert first_batch_s < 2.0
    assert listing_s < 2.0


def test_a_preview_whose_client_left_stops(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root).start()
    heavy = json.dumps(
        {"dataset": "odd", "target_size": [1024, 1024], "blur_sigma_range": [20, 20]}
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(
            f"{server.url}/v1/preview", params={"spec": heavy, "rows": 8, "cols": 8}, timeout=1.5
        )
    left = time.monotonic()
    while True:
        kinds = httpx.get(f"{server.url}/v1/server", timeout=10).json()["workers"]["kinds"]
        if not kinds["preview"]["running"] or time.monotonic() - left > 10:
            break
        time.sleep(0.1)
    stopped_s = time.monotonic() - left
    counts.update(stopped_after_s=round(stopped_s, 2))
    assert not kinds["preview"]["running"]
    assert stopped_s < 3.0
