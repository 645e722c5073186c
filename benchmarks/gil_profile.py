"""Where the server process holds its GIL while it serves (h)'s stream: py-spy's GIL-held
stacks as a tree of microseconds per image, by thread, each frame's subtree summed.

    .venv/bin/python -m benchmarks.gil_profile [--cold] [--processes 2] [--pace 0.6]
        [--seconds 16] [--rate 400] [--least 1.0] [--photometric] [--images 1000]

(h) says how long the server process holds the GIL per image; this says what for, so a
change to the per-batch path can be aimed (``benchmarks.gil_ab`` then measures it). A frame
whose subtree holds less than ``--least`` µs per image is left out. Frames of the threads'
and the event loop's plumbing (threading, runpy, uvicorn's start, asyncio's run) are
dropped so that each thread's tree starts at the work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.comparison import gil
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.ours import served
from benchmarks.comparison.process import serve
from benchmarks.comparison.work import BATCH

__all__ = ["main", "render", "tree"]

#: Frames that only carry a thread or the event loop to the work (dropped from every stack).
_PLUMBING = (
    "threading.py",
    "<frozen runpy>",
    "augstream/_cli.py",
    "asyncio/runners.py",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "augstream_service/cli.py",
    "concurrent/futures/thread.py:58",
    "concurrent/futures/thread.py:83",
)

Tree = dict[str, Any]


def tree(lines: list[str]) -> Tree:
    """py-spy's raw lines (``frame;frame;... count``) as nested dicts: each node's ``"_"``
    is the samples of its subtree, its other keys its callees."""
    root: Tree = {"_": 0}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        node, samples = root, int(count)
        node["_"] += samples
        for frame in stack.split(";"):
            if any(part in frame for part in _PLUMBING):
                continue
            frame = frame.replace("augstream_service/", "").replace("site-packages/", "")
            node = node.setdefault(frame, {"_": 0})
            node["_"] += samples
    return root


def render(root: Tree, us_per_sample: float, least: float) -> list[str]:
    """``root`` as indented lines of µs per image, largest first, subtrees under ``least``
    left out."""
    out: list[str] = []

    def walk(node: Tree, name: str, depth: int) -> None:
        us = node["_"] * us_per_sample
        if us < least:
            return
        out.append(f"{'  ' * depth}{us:6.1f} {name}")
        callees = sorted((k for k in node if k != "_"), key=lambda k: -node[k]["_"])
        for callee in callees:
            walk(node[callee], callee, depth + 1)

    walk(root, "the server process, all threads", 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gil_profile", description=__doc__)
    parser.add_argument("--cold", action="store_true", help="caches off (default: warm)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=2, help="server threads (2)")
    parser.add_argument("--pace", type=float, default=0.6, help="client pace (0.6)")
    parser.add_argument("--seconds", type=int, default=16, help="sampling window (16)")
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second (400)")
    parser.add_argument("--least", type=float, default=1.0, help="µs per image shown (1.0)")
    parser.add_argument("--photometric", action="store_true", help="the photometric work")
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (1000)")
    args = parser.parse_args(argv)
    py_spy = gil._py_spy()
    if py_spy is None:
        print("py-spy is not installed (the dev extra has it)", file=sys.stderr)
        return 2
    env = {"AUGSTREAM_PROCESSES": str(args.processes), **(gil._COLD if args.cold else {})}
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(Path(tmp) / "imagenet-like", args.images)
        raw = Path(tmp) / "raw.txt"
        with serve(root, args.threads, env) as server:
            stream = served(server.url, **(gil.PHOTOMETRIC if args.photometric else {}))
            for _ in range(4 if args.cold else -(-args.images // BATCH)):  # warm: fill caches
                next(stream)
            started, count = time.perf_counter(), 0
            while time.perf_counter() - started < 2.0:
                count += len(next(stream))
            interval = BATCH / (args.pace * count / (time.perf_counter() - started))
            command = [py_spy, "record", "--pid", str(server.pid), "--gil", "--threads"]
            command += ["--rate", str(args.rate), "--format", "raw", "--output", str(raw)]
            command += ["--nonblocking", "--duration", str(args.seconds)]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            images, started = 0, time.perf_counter()
            while spy.poll() is None:
                began = time.perf_counter()
                images += len(next(stream))
                time.sleep(max(0.0, interval - (time.perf_counter() - began)))
            rate = images / (time.perf_counter() - started)
            stream.close()
        lines = raw.read_text().splitlines() if raw.exists() else []
    us_per_sample = 1e6 / (args.rate * args.seconds * rate)
    print(f"{rate:.0f} images/s; each sample {us_per_sample:.2f} µs per image")
    print("\n".join(render(tree(lines), us_per_sample, args.least)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
