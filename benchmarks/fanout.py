"""What handing a batch to the worker processes costs the server thread, by worker count:
its CPU per batch in ``ProcessPool.make`` (send the task, wait, read the replies), warm, this
checkout against an earlier revision in turns.

    .venv/bin/python -m benchmarks.fanout [REV] [--workers 1,2,8] [--rounds 3]
        [--batches 200] [--size 64]

The server thread's CPU time (``time.thread_time``: its Python and its system calls, not
its sleeps) is the part of a batch the server process pays whatever the workers make, so it
is what grows with the workers on a big box; the workers' own time is not in it. Each
figure is measured in a process of its own, with ``REV``'s code (a temporary git worktree)
and this checkout's in turn, one round after the other; medians are compared. On a machine
with fewer cores than workers the workers share the server thread's cores and evict its
caches, so the figures there are higher than a big box's: compare the sides, not the
machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "measure"]

#: Where each side's packages live in a checkout (``PYTHONPATH`` for its measuring process).
_PACKAGES = ("service", "client", "protocol", "")
_BATCH = 32


def measure(root: Path, workers: int, batches: int, size: int) -> dict[str, float]:
    """The server thread's CPU per batch of ``_BATCH`` in ``ProcessPool.make``, once every
    image of ``root`` is in its worker's cache (run in the process of the side measured)."""
    from augstream_protocol.spec import StreamSpec
    from augstream_service.pipeline import make_plan
    from augstream_service.processes import ProcessPool
    from augstream_service.reader import ImageReader
    from augstream_service.settings import Settings
    from augstream_service.wiring import catalog_from, limits_from, uploads_from

    with tempfile.TemporaryDirectory() as uploads:
        settings = Settings(datasets=[root], processes=workers, threads=1, upload_dir=uploads)
        pool = ProcessPool(settings, workers)
        try:
            spec = StreamSpec.model_validate(
                {"dataset": root.name, "target_size": (size, size), "batch_size": _BATCH,
                 "seed": 1, "horizontal_flip": True, "rotation_range": 10}
            )  # fmt: skip
            plan = make_plan(
                spec, catalog_from(settings), uploads_from(settings), limits_from(settings),
                ImageReader(0, 0), maker=pool.make,
            )  # fmt: skip
            count = len(plan.source) // _BATCH
            ids = [list(range(b * _BATCH, (b + 1) * _BATCH)) for b in range(count)]
            for wanted in ids:  # every image decoded once and cached by its owner
                pool.make(plan, 1, wanted, "float32")
            spent = 0.0
            for n in range(batches):
                started = time.thread_time()
                made = pool.make(plan, 1, ids[n % count], "float32")
                spent += time.thread_time() - started
                del made  # its block back to the pool, as a sent batch's is
        finally:
            pool.close()
    return {"cpu_us_per_batch": spent / batches * 1e6}


def _one(code: Path, root: Path, workers: int, args: argparse.Namespace) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(code / p) for p in _PACKAGES)}
    # This file measures either side (REV may not have it): only the packages differ.
    command = [
        sys.executable, str(Path(__file__).resolve()), "--one", str(root),
        "--workers", str(workers), "--batches", str(args.batches), "--size", str(args.size),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measuring {code} failed:\n{done.stderr}")
    return float(json.loads(done.stdout.splitlines()[-1])["cpu_us_per_batch"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__)
    parser.add_argument("rev", nargs="?", help="a revision to compare with (none: this only)")
    parser.add_argument("--workers", default="1,2,8", help="worker counts (1,2,8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side once (3)")
    parser.add_argument("--batches", type=int, default=200, help="batches measured (200)")
    parser.add_argument("--size", type=int, default=64, help="images' side in pixels (64)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",")]
    if args.one is not None:  # a measuring process: one figure, as JSON
        print(json.dumps(measure(args.one, counts[0], args.batches, args.size)))
        return 0
    from benchmarks.comparison.dataset import ensure_dataset

    here = Path(__file__).resolve().parents[1]
    found: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(Path(tmp) / "imagenet-like", 320)
        sides = [("this checkout", here)]
        if args.rev:
            base = Path(tmp) / "base"
            worktree = ["git", "-C", str(here), "worktree"]
            subprocess.run([*worktree, "add", "-q", "--detach", str(base), args.rev], check=True)
            sides.insert(0, (args.rev, base))
        try:
            for number in range(1, args.rounds + 1):
                for workers in counts:
                    for name, code in sides:
                        us = _one(code, root, workers, args)
                        found.setdefault((name, workers), []).append(us)
                        print(
                            f"round {number}, {workers} workers, {name}: {us:.0f} us per batch",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            if args.rev:
                subprocess.run([*worktree, "remove", "--force", str(base)], check=False)
    _report(found, [name for name, _ in sides], counts)
    return 0


def _report(found: dict[tuple[str, int], list[float]], names: list[str], counts: list[int]) -> None:
    medians = {key: statistics.median(values) for key, values in found.items()}
    ratio = len(names) == 2
    print(
        "| workers | "
        + " | ".join(f"{name}: us per batch (per image)" for name in names)
        + (" | ratio |" if ratio else " |")
    )
    print("|---" * (1 + len(names) + ratio) + "|")
    for workers in counts:
        cells = [
            f"{medians[name, workers]:.0f} ({medians[name, workers] / _BATCH:.1f})"
            for name in names
        ]
        tail = (
            f" | {medians[names[1], workers] / medians[names[0], workers]:.2f} |" if ratio else " |"
        )
        print(f"| {workers} | " + " | ".join(cells) + tail)


if __name__ == "__main__":
    raise SystemExit(main())
