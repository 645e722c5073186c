"""Load: 16 concurrent streams for 60 s without an error, with the server's memory bounded."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from augstream import Client
from tests.reliability.conftest import ServerProcess

pytestmark = pytest.mark.slow

STREAMS = 16
SECONDS = float(os.environ.get("AUGSTREAM_LOAD_SECONDS", "60"))
SPEC = {
    "dataset": "odd",
    "target_size": [64, 64],
    "batch_size": 16,
    "rotation_range": 15,
    "zoom_range": 0.1,
    "horizontal_flip": True,
}
BATCH_BYTES = 16 * 64 * 64 * 3
PREFETCH = 4
#: The batch cache, which every stream's batches go into (16 different streams fill it).
BATCH_CACHE = 16 << 20


def test_sixteen_streams_for_a_minute(
    odd_root: Path, server_process: type[ServerProcess], counts: dict[str, Any]
) -> None:
    server = server_process(odd_root, AUGSTREAM_BATCH_CACHE_BYTES=str(BATCH_CACHE)).start()
    baseline = server.figures()["rss_mib"]
    stop = threading.Event()
    images = [0] * STREAMS
    errors: list[BaseException] = []

    def consume(index: int) -> None:
        try:
            with Client(server.url) as client, client.stream(**SPEC, seed=index) as stream:
                while not stop.is_set():
                    images[index] += len(stream.next_batch(timeout=60).sample_ids)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(STREAMS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    peak = baseline
    while time.monotonic() - started < SECONDS:
        peak = max(peak, server.figures()["rss_mib"])
        assert not errors, errors
        time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert min(images) > 0, "a stream starved"
    # Prefetched batches of every stream, the batch cache, and a margin for buffers and the
    # interpreter.
    bound = baseline + (STREAMS * PREFETCH * BATCH_BYTES + BATCH_CACHE) // 2**20 + 64
    counts.update(
        streams=STREAMS,
        seconds=round(elapsed),
        images=sum(images),
        images_per_s=round(sum(images) / elapsed),
        slowest_stream=min(images),
        rss_baseline_mib=baseline,
        rss_peak_mib=peak,
        bound_mib=bound,
    )
    assert peak <= bound
