"""How one server's throughput grows with the cores it is given: a server pinned to 1, 2,
4, ... cores (``taskset``), making its batches in threads alone and in one worker process
per core (``processes``), cold (caches off: every image read and decoded) and warm, on the
benchmark's work (``bench --compare``'s: 500x375 JPEGs to 224x224 float32 batches of 32).

    .venv/bin/python -m benchmarks.scaling [--cores 1,2,4,8,16,32] [--seconds 8] [--uint8]
        [--json F]

The client (this process) reads through the client library on the cores the server is not
given, where there are any: on a box with fewer cores than the largest setting plus one it
shares them, and the top setting's figure is then the server's and the client's together. The
speedups against one core are the point; a threads-only server flattens where its one GIL is
the limit (``bench --compare --only h`` measures that ceiling), the workers' should not.

One client process has a limit of its own: expanding the compact pixels to float32 (the
benchmark's ``rescale``) costs it ~2 ms per batch of 32 on one thread here, and with the rest
of its work one client stopped near 10,000 images/s on a 16-core box, before the client
expanded on several threads (``augstream._expand``; each row of the figures records how
many it used, from the cores left to it). ``--uint8`` streams the same work as
uint8 (no ``rescale``: a trainer that rescales in its model), which the client takes as it
comes, so a bigger box's server, not the one client, sets the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from augstream._expand import default_threads
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.ours import served
from benchmarks.comparison.process import free_port, running
from benchmarks.comparison.work import BATCH

__all__ = ["UINT8", "measure", "report", "settings_for"]

_COLD = {"AUGSTREAM_IMAGE_CACHE_BYTES": "0", "AUGSTREAM_BYTE_CACHE_BYTES": "0"}
_MODES = ("threads cold", "workers cold", "threads warm", "workers warm")
#: ``--uint8``: the benchmark's work without its float rescale, as uint8.
UINT8: dict[str, Any] = {"rescale": None, "dtype": "uint8"}


def settings_for(cores: list[int]) -> list[int]:
    """Core counts to measure: powers of two up to all of ``cores``, and all of them."""
    counts = [n for n in (1 << i for i in range(12)) if n < len(cores)]
    return [*counts, len(cores)]


@contextmanager
def _pinned_server(root: Path, cpus: list[int], processes: int, cold: bool) -> Iterator[str]:
    port = free_port()
    command = ["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m", "augstream._cli"]
    command += ["serve", str(root), "--port", str(port), "--threads", str(len(cpus))]
    command += ["--log-level", "warning"]
    env = {"AUGSTREAM_PROCESSES": str(processes), **(_COLD if cold else {})}
    with running(command, port, "/readyz", env) as server:
        yield server.url


def measure(
    root: Path,
    cpus: list[int],
    *,
    processes: int,
    cold: bool,
    seconds: float,
    fields: dict[str, Any] | None = None,
) -> tuple[float, float]:
    """Images per second one stream gets from a server on ``cpus``, and the client's CPU
    share meanwhile (cores' worth, all its threads): near its cores' count, or near one
    under its GIL, the client rather than the server sets the rate. ``fields``: changes to
    the benchmark's spec (``UINT8``)."""
    with _pinned_server(root, cpus, processes, cold) as url:
        stream = served(url, **(fields or {}))
        per_epoch = -(-len(list(root.rglob("*.jpg"))) // BATCH)
        for _ in range(2 if cold else per_epoch):  # warm: an epoch fills the caches
            next(stream)
        images, started, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            images += len(next(stream))
        elapsed = time.perf_counter() - started
        rate, client = images / elapsed, (time.process_time() - cpu) / elapsed
        stream.close()
    return rate, client


def report(rows: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table, each with its speedup over one core."""
    lines = [
        "| cores | threads cold | workers cold | threads warm | workers warm |",
        "|---|---|---|---|---|",
    ]
    first = rows[0]
    for row in rows:
        cells = []
        for mode in _MODES:
            speedup = row[mode] / first[mode]
            cells.append(f"{row[mode]:,.0f} ({speedup:.2f}x)")
        lines.append(f"| {row['cores']} | " + " | ".join(cells) + " |")
    lines += ["", "The client's CPU meanwhile (cores' worth):", ""]
    lines += ["| cores | " + " | ".join(_MODES) + " |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[f'{mode} client cpu']:.2f}" for mode in _MODES]
        lines.append(f"| {row['cores']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("--cores", help="core counts, e.g. 1,2,4 (default: powers of 2, all)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed per setting (8)")
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (1000)")
    parser.add_argument("--data", type=Path, help="keep the generated images here")
    parser.add_argument("--uint8", action="store_true", help="uint8 batches, not float32")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    counts = [int(n) for n in args.cores.split(",")] if args.cores else settings_for(allowed)
    if max(counts) > len(allowed):
        parser.error(f"this process may use {len(allowed)} cores, not {max(counts)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "imagenet-like"
        ensure_dataset(root, args.images)
        for count in counts:
            server_cpus = allowed[:count]
            # The client on the rest, where there is a rest.
            os.sched_setaffinity(0, allowed[count:] or allowed)
            row: dict[str, Any] = {"cores": count, "client expand threads": default_threads()}
            for cold in (True, False):
                for processes in (0, count):
                    mode = f"{'workers' if processes else 'threads'} {'cold' if cold else 'warm'}"
                    print(f"{count} cores, {mode} ...", file=sys.stderr, flush=True)
                    row[mode], row[f"{mode} client cpu"] = measure(
                        root,
                        server_cpus,
                        processes=processes,
                        cold=cold,
                        seconds=args.seconds,
                        fields=UINT8 if args.uint8 else None,
                    )
                    print(
                        f"  {row[mode]:,.0f} images/s, the client {row[f'{mode} client cpu']:.2f}"
                        " cores",
                        file=sys.stderr,
                        flush=True,
                    )
            rows.append(row)
        os.sched_setaffinity(0, allowed)
    print(report(rows))
    if args.json:
        figures = {"cpus": len(allowed), "uint8": args.uint8, "rows": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
