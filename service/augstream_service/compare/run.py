"""Run the comparison, print the table and the ratios, write the figures as JSON."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import ensure_dataset
from .process import free_port, running, serve
from .timing import Figures, measure
from .work import BATCH

__all__ = ["TARGETS", "main", "run"]

Array = np.ndarray[Any, Any]

NAMES = {
    "a": "Keras ImageDataGenerator.flow_from_directory",
    "b": "tf.data + Keras preprocessing layers (AUTOTUNE)",
    "c": "tf.data service (local dispatcher + worker)",
    "d": "augstream pipeline in process (no HTTP)",
    "e": "augstream served over loopback HTTP, cold",
    "f": "augstream served over loopback HTTP, warm",
}

#: The issue's targets: (contender, versus, least ratio).
TARGETS = [("e", "a", 4.0), ("e", "b", 3.0), ("e", "c", 3.0), ("e", "d", 0.85), ("f", "a", 15.0)]
#: Transport over HTTP against a raw socket.
TRANSPORT_TARGET = 0.5


def _timed(batches: Iterator[Array], count: int) -> Figures:
    try:
        return measure(batches, count)
    finally:
        # Generators stop their pools, streams and servers when closed.
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        gc.collect()


def run(
    root: Path, batches: int, threads: int, only: str, transport_batches: int
) -> dict[str, Any]:
    """Measure every contender in ``only`` (letters a-g); return the figures."""
    figures: dict[str, Figures] = {}
    #: Milliseconds of worker time per image in each server stage, cold and warm.
    profile: dict[str, dict[str, float]] = {}

    def step(letter: str, make: Callable[[], Figures]) -> None:
        if letter in only:
            print(f"({letter}) {NAMES.get(letter, 'transport')} ...", file=sys.stderr, flush=True)
            figures[letter] = make()

    from . import ours

    step("d", lambda: _timed(ours.in_process(root, threads), batches))
    if "e" in only or "f" in only:
        with serve(root, threads) as server:
            stream = ours.served(server.url)
            # One stream: its first epoch decodes every image (cold), the next finds them all
            # in the server's decoded-image cache (warm).
            per_epoch = -(-len(list(root.rglob("*.jpg"))) // BATCH)
            cold = measure(stream, min(batches, per_epoch - 1))
            for _ in range(per_epoch - 1 - min(batches, per_epoch - 1)):
                next(stream)
            after_cold = ours.stage_seconds(server.url)
            step("e", lambda: cold)
            step("f", lambda: measure(stream, batches, warmup=0))
            stream.close()
            after_warm = ours.stage_seconds(server.url)
            images = per_epoch * BATCH
            profile["cold"] = _per_image(after_cold, {}, images)
            if "f" in figures:
                profile["warm"] = _per_image(after_warm, after_cold, figures["f"].images)
    if "a" in only or "b" in only or "c" in only:
        from . import rivals

        step("a", lambda: _timed(rivals.keras_image_data_generator(root), batches))
        step("b", lambda: _timed(rivals.tf_data(root), batches))
        if "c" in only:
            service, make = rivals.tf_data_service(root)
            with service as target:
                step("c", lambda: _timed(make(target), batches))
    transport: dict[str, float] = {}
    if "g" in only:
        from . import transport as g

        port = free_port()
        command = [sys.executable, "-m", g.__name__, str(port), str(transport_batches)]
        with running(command, port, "/docs") as server:
            http = g.http_transport(server.url, transport_batches)
        raw = g.raw_socket(http.nbytes)
        transport = {"http_mb_s": http.mb_per_s, "raw_socket_mb_s": raw.mb_per_s}
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "work": "decode 500x375 JPEG, resize 224x224, rotation 20, shifts 0.1, zoom 0.1, "
        "horizontal flip, rescale 1/255, float32 batches of 32",
        "threads": threads,
        "images_per_s": {k: round(v.images_per_s, 1) for k, v in sorted(figures.items())},
        "images_timed": {k: v.images for k, v in sorted(figures.items())},
        "transport": {k: round(v, 1) for k, v in transport.items()},
        "server_ms_per_image": profile,
    }


def _per_image(now: dict[str, float], before: dict[str, float], images: int) -> dict[str, float]:
    return {
        stage: round((seconds - before.get(stage, 0.0)) * 1000 / images, 3)
        for stage, seconds in now.items()
    }


def ratios(result: dict[str, Any]) -> list[tuple[str, str, float, float, bool]]:
    """(contender, versus, ratio, target, met) for each target both sides were measured for."""
    rates = result["images_per_s"]
    out = []
    for mine, theirs, target in TARGETS:
        if mine in rates and theirs in rates:
            ratio = rates[mine] / rates[theirs]
            out.append((mine, theirs, ratio, target, ratio >= target))
    transport = result["transport"]
    if transport:
        ratio = transport["http_mb_s"] / transport["raw_socket_mb_s"]
        out.append(("g", "raw socket", ratio, TRANSPORT_TARGET, ratio >= TRANSPORT_TARGET))
    return out


def report(result: dict[str, Any]) -> str:
    """The figures as a Markdown table and the targets, as the README records them."""
    lines = ["| | contender | images/s |", "|---|---|---|"]
    for letter, rate in result["images_per_s"].items():
        lines.append(f"| ({letter}) | {NAMES[letter]} | {rate:.0f} |")
    transport = result["transport"]
    if transport:
        lines.append(
            f"| (g) | transport: ready frames over loopback HTTP | "
            f"{transport['http_mb_s']:.0f} MB/s (raw socket {transport['raw_socket_mb_s']:.0f}"
            " MB/s) |"
        )
    for when, stages in result["server_ms_per_image"].items():
        spent = ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items())
        lines.append(f"\nserver worker ms per image, {when}: {spent}")
    lines.append("")
    for mine, theirs, ratio, target, met in ratios(result):
        versus = theirs if theirs == "raw socket" else f"({theirs})"
        verdict = "met" if met else f"MISSED by {target - ratio:.2f}"
        lines.append(f"- ({mine}) / {versus} = {ratio:.2f} (target >= {target}): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``augstream bench --compare [options]``: run, print the table, write the JSON."""
    from . import __doc__ as about

    parser = argparse.ArgumentParser(
        prog="augstream bench --compare",
        description=about,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=1000, help="JPEGs to generate (1000)")
    parser.add_argument(
        "--batches", type=int, default=30, help="timed batches per contender, after one (30)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="(all cores)")
    parser.add_argument("--only", default="abcdefg", help="contenders to run, e.g. 'ade'")
    parser.add_argument("--transport-batches", type=int, default=200, help="(200)")
    parser.add_argument("--data", type=Path, help="keep the generated images here for next time")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    # TensorFlow's start-up chatter would bury the table.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "imagenet-like"
        ensure_dataset(root, args.images)
        result = run(root, args.batches, args.threads, args.only, args.transport_batches)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps({**result, "ratios": ratios(result)}, indent=2) + "\n")
    return 0
