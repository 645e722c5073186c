"""What a stream request costs the server process beyond its batches: the CPU of a long
stream per batch against that of one-batch requests (each a new ``POST /v1/stream``, as a
grant of a spread stream is), on the benchmark's work with worker processes, warm, the
batches compact as the client asks for them. A spread stream (``--servers``, a cluster)
pays the difference once per grant of a few batches; one long stream pays it once.

    .venv/bin/python -m benchmarks.request_cost [--requests 150] [--rounds 3] [--processes 2]

The one-batch requests ask for batches of epochs no stream read before, so none is served
from the batch cache; every image is decoded before either is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from augstream_protocol.wire import COMPACT_REQUEST
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.gil import cpu_seconds
from benchmarks.comparison.process import serve
from benchmarks.comparison.work import BATCH, SPEC

__all__ = ["main"]


def _read(http: httpx.Client, spec: dict[str, Any], epoch: int, batches: int) -> None:
    body = {**spec, "start": {"epoch": epoch, "batch": 0}, "batches": batches}
    with http.stream("POST", "/v1/stream", json=body) as response:
        response.raise_for_status()
        for _ in response.iter_raw():
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=150, help="one-batch requests (150)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, both ways each (3)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=2, help="server threads (2)")
    args = parser.parse_args(argv)
    long_ms, short_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "imagenet-like"
        ensure_dataset(root, 10 * BATCH)
        env = {"AUGSTREAM_PROCESSES": str(args.processes)}
        with (
            serve(root, args.threads, env) as server,
            httpx.Client(base_url=server.url, timeout=120, headers=[COMPACT_REQUEST]) as http,
        ):
            spec = {"dataset": root.name, **SPEC}
            _read(http, spec, 0, 10)  # an epoch: every image decoded
            epoch = 1
            for _ in range(args.rounds):
                before = cpu_seconds(server.pid)
                _read(http, spec, epoch, args.requests)  # epochs it never read: no cache hit
                epoch += -(-args.requests // 10)
                long_ms.append((cpu_seconds(server.pid) - before) * 1e3 / args.requests)
                before = cpu_seconds(server.pid)
                for _ in range(args.requests):
                    _read(http, spec, epoch, 1)
                    epoch += 1
                short_ms.append((cpu_seconds(server.pid) - before) * 1e3 / args.requests)
    each = ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(long_ms, short_ms, strict=True))
    print(f"server process CPU per batch, long stream / one-batch requests (rounds): {each}")
    extra = statistics.median(short_ms) - statistics.median(long_ms)
    print(
        f"medians: {statistics.median(long_ms):.2f} ms per batch of a long stream, "
        f"{statistics.median(short_ms):.2f} ms per one-batch request: {extra:.2f} ms a request"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
