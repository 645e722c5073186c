"""``augstream bench URL DATASET``: how many augmented images per second a server streams
to this machine."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from augstream.client import Client
from augstream.stream import Batch, Stream

from .args import add_set, add_target_size, command, positive

if TYPE_CHECKING:
    from .args import Subcommands

__all__ = ["add_bench"]

#: Longest wait for one batch in ``bench``; the stream itself reconnects on silence sooner.
_BATCH_TIMEOUT_S = 120.0
_WARMUP_BATCHES = 2


def add_bench(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    bench = command(
        commands,
        common,
        "bench",
        "measure how many images per second a server feeds this machine",
        "Measure how many augmented images per second a server streams to this machine:\n"
        f"--batches batches, after {_WARMUP_BATCHES} warm-up batches that are not counted.",
        "augstream bench http://lab-server:8080 cats --batches 100 \\\n"
        "      --set rotation_range=20 --set horizontal_flip=true",
    )
    bench.add_argument("dataset", metavar="DATASET", help="a dataset of the server")
    bench.add_argument(
        "--batches", type=positive, default=50, metavar="N", help="batches to time (default: 50)"
    )
    bench.add_argument(
        "--batch-size",
        type=positive,
        default=32,
        metavar="N",
        help="images per batch (default: 32)",
    )
    add_target_size(bench, (224, 224))
    add_set(
        bench,
        reserved={
            "dataset": "give it as DATASET",
            "target_size": "use --target-size",
            "batch_size": "use --batch-size",
            "epochs": "bench reads an endless stream",
        },
    )
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    # Handled before parsing (augstream._cli): listed here so that --help shows it.
    bench.add_argument(
        "--compare",
        action="store_true",
        help="instead: compare augstream with Keras' ImageDataGenerator, tf.data and tf.data "
        "service on this machine (no URL; see augstream bench --compare --help)",
    )
    bench.set_defaults(client_command=_bench)


class _Progress:
    """A progress bar on ``out``, redrawn in place on a terminal; elsewhere (a log, a CI
    job) a line about every tenth of the way, so the log stays short."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.every = max(1, math.ceil(total / 10))

    def update(self, done: int, images_per_s: float) -> None:
        rate = f"{images_per_s:,.0f} images/s"
        if self.tty:
            filled = 30 * done // self.total
            bar = "#" * filled + "." * (30 - filled)
            # Padded: a shorter rate must cover the longer one drawn before it.
            self.out.write(f"\r[{bar}] {done}/{self.total} batches  {rate:<20}")
            if done == self.total:
                self.out.write("\n")
        elif done % self.every == 0 or done == self.total:
            self.out.write(f"bench: {done}/{self.total} batches, {rate}\n")
        self.out.flush()


def _bench(args: argparse.Namespace) -> None:
    with Client(args.url, api_key=args.api_key) as client:
        # Starting a stream retries an unreachable server for seconds, as a trainer wants;
        # a plain request fails at once, and names an unknown dataset or a missing key.
        client.dataset(args.dataset)
        fields = {
            **args.fields,
            "dataset": args.dataset,
            "target_size": args.target_size,
            "batch_size": args.batch_size,
        }
        started = time.perf_counter()
        with client.stream(**fields) as stream:
            first_batch_s = _warm_up(stream) - started
            figures = _measure(stream, args.batches)
            figures.update(first_batch_s=first_batch_s, reconnects=stream.reconnects)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "url": args.url, **figures}, indent=2))
    else:
        print(_report(args, figures))


def _warm_up(stream: Stream) -> float:
    """Read the uncounted batches; return when the first one arrived."""
    stream.next_batch(timeout=_BATCH_TIMEOUT_S)
    first = time.perf_counter()
    for _ in range(_WARMUP_BATCHES - 1):
        stream.next_batch(timeout=_BATCH_TIMEOUT_S)
    return first


def _measure(stream: Stream, batches: int) -> dict[str, Any]:
    progress = _Progress(batches, sys.stderr)
    images = nbytes = 0
    start = time.perf_counter()
    for done in range(1, batches + 1):
        batch = stream.next_batch(timeout=_BATCH_TIMEOUT_S)
        images += len(batch.sample_ids)
        nbytes += _nbytes(batch)
        progress.update(done, images / max(time.perf_counter() - start, 1e-9))
    seconds = time.perf_counter() - start
    return {
        "batches": batches,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "batches_per_s": batches / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
    }


def _nbytes(batch: Batch) -> int:
    labels = batch.y if isinstance(batch.y, list) else [batch.y]
    arrays = [batch.x, *labels, batch.sample_weight]
    return sum(a.nbytes for a in arrays if a is not None)


def _report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    height, width = args.target_size
    lines = [
        f"{args.dataset} from {args.url}: {figures['batches']} batches of {args.batch_size} "
        f"at {height}x{width}, {figures['images']} images in {figures['seconds']:.2f} s",
        f"  images/s     {figures['images_per_s']:10.1f}",
        f"  batches/s    {figures['batches_per_s']:10.2f}",
        f"  MB/s         {figures['mb_per_s']:10.1f}   (arrays as decoded here)",
        f"  first batch  {figures['first_batch_s']:10.3f} s (connect, plan and make it)",
    ]
    if figures["reconnects"]:
        lines.append(f"  the stream reconnected {figures['reconnects']} times")
    return "\n".join(lines)
