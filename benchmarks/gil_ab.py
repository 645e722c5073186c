"""The server process's GIL and CPU per image, this checkout against an earlier revision, in
turns: what a change to the server's per-image work did, measured side by side (one window
varies by a quarter on a shared machine, so rounds alternate and medians are compared).

    .venv/bin/python -m benchmarks.gil_ab REV [--cold] [--processes 2] [--rounds 4]
        [--pace 0.8] [--photometric] [--isolated] [--awake] [--images 1000]

``REV`` is checked out into a temporary git worktree; each round serves the benchmark's work
(``bench --compare``'s, or its photometric variant) from REV's code and then from this
checkout's, and ``benchmarks.comparison.gil.measure`` samples the server process (py-spy)
while one client reads, at ``pace`` of its unpaced rate so the cores are not all busy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.comparison import gil
from benchmarks.comparison.dataset import ensure_dataset

__all__ = ["main"]

#: Where each side's packages live in a checkout (``PYTHONPATH`` for its server process).
_PACKAGES = ("service", "client", "protocol", "")


def _measure(code: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["PYTHONPATH"] = os.pathsep.join(str(code / part) for part in _PACKAGES)
    fields = gil.PHOTOMETRIC if args.photometric else None
    return gil.measure(
        root, cold=args.cold, processes=args.processes, threads=args.threads,
        fields=fields, seconds=args.seconds, pace=args.pace,
        isolated=args.isolated or args.awake, awake=args.awake, servers=args.servers,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gil_ab", description=__doc__)
    parser.add_argument("rev", help="the revision to compare with (a commit, a tag, HEAD~3)")
    gil.add_arguments(parser, threads=os.cpu_count() or 1, pace=0.8, seconds=6.0)
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each side once (4)")
    args = parser.parse_args(argv)
    if not gil.available():
        print("py-spy is not installed (the dev extra has it)", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parents[1]
    found: dict[str, list[dict[str, Any]]] = {args.rev: [], "this checkout": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(Path(tmp) / "imagenet-like", args.images)
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(here), "worktree", "add", "-q", "--detach", str(base), args.rev],
            check=True,
        )
        try:
            for number in range(1, args.rounds + 1):
                for name, code in ((args.rev, base), ("this checkout", here)):
                    figures = _measure(code, root, args)
                    found[name].append(figures)
                    print(
                        f"round {number}, {name}: server GIL "
                        f"{figures['gil_us_per_image']['server']} us, CPU "
                        f"{figures['cpu_us_per_image']['server']} us per image, "
                        f"{figures['images_per_s']} images/s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(here), "worktree", "remove", "--force", str(base)], check=False
            )
    print("| | server GIL us/image | server CPU us/image | images/s | server's ceiling |")
    print("|---|---|---|---|---|")
    for name, rows in found.items():
        gil_us = statistics.median(r["gil_us_per_image"]["server"] for r in rows)
        cpu_us = statistics.median(r["cpu_us_per_image"]["server"] for r in rows)
        rate = statistics.median(r["images_per_s"] for r in rows)
        ceiling = statistics.median(r["server_ceiling_images_per_s"] for r in rows)
        print(f"| {name} | {gil_us:.1f} | {cpu_us:.1f} | {rate:.0f} | {ceiling:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
