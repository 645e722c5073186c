"""How long the client takes to expand a compact batch to float32 on 1, 2, ... threads
(``augstream._expand.Expander``): the benchmark's batch (32 x 224 x 224 x 3, ``rescale``
1/255), each thread count in turn per round, medians; the speedup against the first count
given (one thread by default) is the point. One thread's time per batch caps what one
client process can read as float32.

    .venv/bin/python -m benchmarks.expand [--threads 1,2,4] [--rounds 5] [--batches 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from augstream._expand import Expander

from .comparison.work import BATCH, SIZE

__all__ = ["main"]

ENTRY = {"dtype": "float32", "wire": {"dtype": "uint8", "scale": 1 / 255}}


def per_batch(expander: Expander, x: np.ndarray[Any, Any], batches: int) -> float:
    """Seconds per batch over ``batches`` expansions (after one untimed)."""
    expander(x, ENTRY)
    started = time.perf_counter()
    for _ in range(batches):
        expander(x, ENTRY)
    return (time.perf_counter() - started) / batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expand", description=__doc__)
    parser.add_argument("--threads", default="1,2,4", help="thread counts (1,2,4)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each count once (5)")
    parser.add_argument("--batches", type=int, default=50, help="timed batches per count (50)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.threads.split(",")]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    expanders = {count: Expander(count) for count in counts}
    times: dict[int, list[float]] = {count: [] for count in counts}
    for _ in range(args.rounds):
        for count in counts:
            times[count].append(per_batch(expanders[count], x, args.batches))
    first = statistics.median(times[counts[0]])
    print("| threads | ms per batch (median) | images/s one consumer could expand | speedup |")
    print("|---|---|---|---|")
    for count in counts:
        median = statistics.median(times[count])
        print(f"| {count} | {median * 1e3:.2f} | {BATCH / median:,.0f} | {first / median:.2f}x |")
    for expander in expanders.values():
        expander.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
