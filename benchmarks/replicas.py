"""One stream spread over 1, 2 and 3 local replicas (separate server processes, as behind a
compose file), on the same machine, in one run.

    .venv/bin/python -m benchmarks.replicas [--images 400] [--size 256] [--threads 1] [--rounds 3]

Each replica is an ``augstream serve`` process with ``--threads`` workers and caches off (every
image decoded, as on a first epoch); the client reads one epoch per setting, the settings
taking turns for ``--rounds`` rounds (so a noisy neighbour hits them alike), and prints the
median images per second and the ratio to one replica. On a 2-core machine little gain is
possible: the point is that the method holds (the same batches, spread), and what it costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from augstream import Client
from benchmarks.comparison.process import serve
from benchmarks.remote_cache import write_images

SPEC: dict[str, Any] = {
    "dataset": "photos",
    "target_size": (128, 128),
    "batch_size": 16,
    "rotation_range": 15,
    "horizontal_flip": True,
    "epochs": 1,
    "seed": 3,
}


def one_epoch(urls: list[str]) -> float:
    images = 0
    started = time.perf_counter()
    with Client(urls) as client, client.stream(**SPEC) as stream:
        for _ in range(len(stream)):
            images += len(stream.next_batch(timeout=120).sample_ids)
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Caches off: every image decoded, as on a first epoch.
    env = {"AUGSTREAM_IMAGE_CACHE_BYTES": "0", "AUGSTREAM_BYTE_CACHE_BYTES": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_images(root, args.images, args.size)
        with ExitStack() as stack:
            urls = [stack.enter_context(serve(root, args.threads, env)).url for _ in range(3)]
            one_epoch(urls[:1])  # warm the page cache and the processes
            runs: dict[int, list[float]] = {1: [], 2: [], 3: []}
            for _ in range(args.rounds):
                for n, found in runs.items():
                    found.append(one_epoch(urls[:n]))
            rates = {n: statistics.median(found) for n, found in runs.items()}
    print(
        f"{args.images} JPEGs {args.size}px -> 128px, {args.threads} thread(s) per replica, "
        f"median of {args.rounds} epochs each"
    )
    for n, rate in rates.items():
        print(f"{n} replica(s): {rate:7.1f} images/s  ({rate / rates[1]:.2f}x one replica)")


if __name__ == "__main__":
    main()
