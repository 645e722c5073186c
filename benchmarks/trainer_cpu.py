"""The trainer's CPU time per batch: float32 batches (rescaled on the server) against uint8
batches that the model rescales itself (a ``Rescaling`` layer: on a GPU host, the
accelerator's work), in one run.

    .venv/bin/python -m benchmarks.trainer_cpu [--images 64] [--size 224] [--batches 60]
        [--json figures.json]

The server is ``augstream serve`` in its own process, its caches warmed by a first pass, so
this process's CPU time (``time.process_time``: all its threads) is the trainer's side only:
reading the frames, checking their CRC, and, for float32, expanding the wire's uint8 pixels
to floats (a server sends compact frames either way: the bytes on the wire are the same). A
uint8 batch also goes to the device in a quarter of the bytes. The ``Rescaling`` layer is
timed on this machine's CPU too, for a trainer without an accelerator: on a GPU host it runs
on the GPU, in the model's first step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from augstream import Client
from benchmarks.comparison.process import serve
from benchmarks.remote_cache import write_images

SPEC: dict[str, Any] = {
    "dataset": "photos",
    "batch_size": 32,
    "rotation_range": 15,
    "horizontal_flip": True,
    "seed": 5,
}
WAYS: dict[str, dict[str, Any]] = {"float32": {"rescale": 1 / 255}, "uint8": {"dtype": "uint8"}}


def per_batch(url: str, size: int, batches: int, fields: dict[str, Any]) -> dict[str, float]:
    """CPU and wall seconds per batch of this process, over ``batches`` batches after a
    few to settle; and the batch's bytes."""
    spec = {**SPEC, "target_size": (size, size), **fields}
    with Client(url) as client, client.stream(**spec) as stream:
        for _ in range(5):
            x = stream.next_batch(timeout=120).x
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(batches):
            x = stream.next_batch(timeout=120).x
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms": 1e3 * cpu / batches, "wall_ms": 1e3 * wall / batches, "bytes": x.nbytes}


def rescaling_on_cpu(size: int, rounds: int = 20) -> float | None:
    """Milliseconds of this CPU per uint8 batch through ``keras.layers.Rescaling(1 / 255)``
    (None without Keras)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError:
        return None
    layer = keras.layers.Rescaling(1 / 255)
    batch = np.zeros((SPEC["batch_size"], size, size, 3), np.uint8)
    keras.ops.convert_to_numpy(layer(batch))  # built, compiled
    times = []
    for _ in range(rounds):
        started = time.process_time()
        keras.ops.convert_to_numpy(layer(batch))
        times.append(time.process_time() - started)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures: dict[str, Any] = {"size": args.size, "batch_size": SPEC["batch_size"]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_images(root, args.images, args.size + 32)
        with serve(root, threads=2) as served:
            per_batch(served.url, args.size, 2, WAYS["float32"])  # the caches, warmed
            for name, fields in WAYS.items():
                figures[name] = per_batch(served.url, args.size, args.batches, fields)
    figures["rescaling_on_cpu_ms"] = rescaling_on_cpu(args.size)
    ratio = figures["float32"]["cpu_ms"] / figures["uint8"]["cpu_ms"]
    figures["cpu_ratio_float32_to_uint8"] = ratio
    for name in WAYS:
        found = figures[name]
        print(
            f"{name:8s} trainer CPU {found['cpu_ms']:6.2f} ms/batch "
            f"(wall {found['wall_ms']:6.2f} ms), {found['bytes'] / 2**20:5.1f} MiB a batch"
        )
    print(f"float32 costs the trainer {ratio:.2f}x the CPU of uint8 per batch")
    if figures["rescaling_on_cpu_ms"] is not None:
        print(
            f"Rescaling(1/255) of a uint8 batch on this CPU (no accelerator): "
            f"{figures['rescaling_on_cpu_ms']:.2f} ms"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
