"""Where the server process holds its GIL while it serves (h)'s stream: py-spy's GIL-held
stacks as a tree of microseconds per image, by thread, each frame's subtree summed.

    .venv/bin/python -m benchmarks.gil_profile [--cold] [--processes 2] [--pace 0.6]
        [--seconds 16] [--rate 400] [--least 1.0] [--photometric] [--isolated] [--awake]
        [--images 1000]

(h) says how long the server process holds the GIL per image; this says what for, so a
change to the per-batch path can be aimed (``benchmarks.gil_ab`` then measures it). A frame
whose subtree holds less than ``--least`` µs per image is left out. Frames of the threads'
and the event loop's plumbing (threading, runpy, uvicorn's start, asyncio's run) are
dropped so that each thread's tree starts at the work.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.comparison import gil
from benchmarks.comparison.box import wait_for_siblings
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.ours import served
from benchmarks.comparison.process import serve

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
    gil.add_arguments(parser, threads=2, pace=0.6, seconds=16)
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second (400)")
    parser.add_argument("--least", type=float, default=1.0, help="µs per image shown (1.0)")
    args = parser.parse_args(argv)
    if not gil.available():
        print("py-spy is not installed (the dev extra has it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_dataset(Path(tmp) / "imagenet-like", args.images)
        env = gil.server_env(args.processes, args.cold, args.servers)
        with serve(root, args.threads, env) as server:
            # With --servers, the first server process's profile (the stream is spread).
            wait_for_siblings(server.url)
            stream = served(server.url, **(gil.PHOTOMETRIC if args.photometric else {}))
            pids = gil.server_processes(server.pid)
            isolated = args.isolated or args.awake
            with gil.isolation(pids, isolated, args.awake), contextlib.closing(stream):
                interval = gil.ready(stream, root, args.cold, args.pace)
                spies = gil.held([server.pid], args.seconds, Path(tmp), args.rate, threads=True)
                rate, _ = gil.paced(stream, interval, spies)
        raw = Path(tmp) / f"{server.pid}.txt"
        lines = raw.read_text().splitlines() if raw.exists() else []
    us_per_sample = 1e6 / (args.rate * args.seconds * rate)
    print(f"{rate:.0f} images/s; each sample {us_per_sample:.2f} µs per image")
    print("\n".join(render(tree(lines), us_per_sample, args.least)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
