"""One server process against several (``--servers``) on the same box, in turns: the
busiest server process's GIL per image and the ceiling it implies, the stream spread over
the box's server processes, the box's threads and worker processes shared out over them.

    .venv/bin/python -m benchmarks.servers [--servers 1,2] [--rounds 3] [--cold]
        [--processes 2] [--pace 1.0] [--seconds 6] [--images 1000]

Each round measures every ``--servers`` count once with ``benchmarks.comparison.gil.measure``
((h)'s method: py-spy's share and the CPU share, the smaller), one after the other, so that
a slow window of this shared machine weighs on both; medians are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.comparison import gil
from benchmarks.comparison.dataset import ensure_dataset

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=__doc__)
    parser.add_argument("--servers", default="1,2", help="server process counts (1,2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each count once (3)")
    parser.add_argument("--cold", action="store_true", help="caches off (default: warm)")
    parser.add_argument("--processes", type=int, default=2, help="the box's worker processes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="its threads")
    parser.add_argument("--pace", type=float, default=1.0, help="client pace (1.0: unpaced)")
    parser.add_argument("--seconds", type=float, default=6.0, help="sampling window (6)")
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (1000)")
    args = parser.parse_args(argv)
    if not gil.available():
        print("py-spy is not installed (the dev extra has it)", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.servers.split(",")]
    found: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(Path(tmp) / "imagenet-like", args.images)
        for number in range(1, args.rounds + 1):
            for servers in counts:
                row = gil.measure(
                    root, cold=args.cold, processes=args.processes, threads=args.threads,
                    seconds=args.seconds, pace=args.pace, servers=servers,
                )  # fmt: skip
                found[servers].append(row)
                held = ", ".join(f"{k} {v:.0f}" for k, v in row["gil_us_per_image"].items())
                print(
                    f"round {number}, {servers} server(s): {row['images_per_s']:.0f} images/s, "
                    f"GIL us per image: {held}; server ceiling "
                    f"{row['server_ceiling_images_per_s']:,}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"| servers ({'cold' if args.cold else 'warm'}) | images/s | busiest server process: "
          "GIL us per image | its ceiling (each round) | busiest of all: ceiling |")  # fmt: skip
    print("|---|---|---|---|---|")
    for servers, rows in found.items():
        ceilings = [r["server_ceiling_images_per_s"] for r in rows]
        middle = sorted(rows, key=lambda r: r["server_ceiling_images_per_s"])[(len(rows) - 1) // 2]
        held = max(us for k, us in middle["gil_us_per_image"].items() if k.startswith("server"))
        print(
            f"| {servers} | {statistics.median(r['images_per_s'] for r in rows):.0f} "
            f"| {held:.0f} | {middle['server_ceiling_images_per_s']:,} "
            f"({', '.join(f'{c:,}' for c in ceilings)}) | {middle['ceiling_images_per_s']:,} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
