"""Peak server memory with 16 concurrent streams of the comparison's work (224x224, batches of
32, float32 asked for), against what the configuration allows.

    .venv/bin/python -m benchmarks.memory [--streams 16] [--seconds 40] [--data DIR]

The server (an ``augstream serve`` process) gets fixed cache budgets; the bound is those
budgets, plus every stream's prefetched batches, plus the interpreter as measured at rest.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from augstream import Client
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.process import serve
from benchmarks.comparison.work import BATCH, SIZE, SPEC

IMAGE_CACHE, BYTE_CACHE, BATCH_CACHE, PREFETCH = 256 << 20, 64 << 20, 64 << 20, 4


def memory_mib(pid: int) -> tuple[int, int]:
    """(resident now, resident peak) of process ``pid`` in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    env = {
        "AUGSTREAM_IMAGE_CACHE_BYTES": str(IMAGE_CACHE),
        "AUGSTREAM_BYTE_CACHE_BYTES": str(BYTE_CACHE),
        "AUGSTREAM_BATCH_CACHE_BYTES": str(BATCH_CACHE),
        "AUGSTREAM_PREFETCH": str(PREFETCH),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(args.data or Path(tmp) / "imagenet-like")
        with serve(root, threads=2, env=env) as (url, pid):
            rest = memory_mib(pid)[0]
            stop = threading.Event()
            images = [0] * args.streams

            def consume(index: int) -> None:
                with (
                    Client(url) as client,
                    client.stream(dataset=root.name, **{**SPEC, "seed": index}) as stream,
                ):
                    while not stop.is_set():
                        images[index] += len(stream.next_batch(timeout=300).sample_ids)

            threads = [
                threading.Thread(target=consume, args=(i,), daemon=True)
                for i in range(args.streams)
            ]
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            peak = memory_mib(pid)[1]
    batch_mib = BATCH * SIZE * SIZE * 3 / 2**20  # compact: uint8 on the wire
    caches = IMAGE_CACHE + BYTE_CACHE + BATCH_CACHE
    bound = rest + caches / 2**20 + args.streams * PREFETCH * batch_mib
    print(
        f"{args.streams} streams for {args.seconds:.0f} s: {sum(images)} images "
        f"(slowest stream {min(images)}); server RSS at rest {rest} MiB, peak {peak} MiB; "
        f"bound {bound:.0f} MiB = rest + caches {caches >> 20} MiB + "
        f"{args.streams} x {PREFETCH} prefetched batches of {batch_mib:.1f} MiB"
    )


if __name__ == "__main__":
    main()
