"""Run the comparison, print the table and the ratios, write the figures as JSON."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
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

__all__ = ["TARGETS", "main", "run", "summarize"]

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
    root: Path,
    batches: int,
    threads: int,
    only: str,
    transport_batches: int,
    rounds: int = 1,
    gil_seconds: float = 6.0,
    pace: float = 1.0,
) -> dict[str, Any]:
    """Measure every contender in ``only`` (letters a-h), ``rounds`` times in turn; return
    each round's figures and their medians (the ratios are the medians'); (h), the GIL, each
    configuration's median round."""
    figures: list[dict[str, Figures]] = []
    transports: list[dict[str, float]] = []
    #: Milliseconds of worker time per image in each server stage, cold and warm (last round).
    profile: dict[str, dict[str, float]] = {}
    for number in range(1, rounds + 1):
        label = f"round {number}/{rounds}"
        figures.append(_round(root, batches, threads, only, label, profile))
        if "g" in only:
            transports.append(_transport(transport_batches, label))
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "work": "decode 500x375 JPEG, resize 224x224, rotation 20, shifts 0.1, zoom 0.1, "
        "horizontal flip, rescale 1/255, float32 batches of 32",
        "threads": threads,
        **summarize(figures, transports),
        "server_ms_per_image": profile,
        "gil": _gil(root, threads, gil_seconds, pace, rounds) if "h" in only else [],
        "gil_wake_penalty": _wake_penalty() if "h" in only else {},
    }


def _wake_penalty() -> dict[str, float]:
    from . import gil

    return gil.wake_penalty() if len(os.sched_getaffinity(0)) >= 2 else {}


def _gil(
    root: Path, threads: int, seconds: float, pace: float, rounds: int
) -> list[dict[str, Any]]:
    """(h) every configuration: the benchmark's work and a photometric one, cold and warm,
    threads alone and one worker process per core, and the benchmark's with the server
    process isolated on a core of its own (given 2 cores), that core also kept awake
    (``gil.keep_awake``), and the box's cores shared by two server processes
    (``--servers 2``) that one stream is spread over; ``rounds`` times in turn, each
    configuration's median round kept (one window's ceiling varies by a quarter here)."""
    from . import gil

    if not gil.available():
        print("(h) skipped: py-spy is not installed", file=sys.stderr)
        return []
    cores = len(os.sched_getaffinity(0))
    # (work, its fields, cold, processes, isolated, awake, servers)
    configs = [
        (work, fields, cold, processes, False, False, 1)
        for work, fields in (("benchmark", {}), ("photometric", gil.PHOTOMETRIC))
        for cold in (True, False)
        for processes in (0, cores)
    ]
    if cores >= 2:
        configs += [
            ("benchmark", {}, cold, cores, True, awake, 1)
            for awake in (False, True)
            for cold in (True, False)
        ]
        configs += [("benchmark", {}, cold, cores, False, False, 2) for cold in (True, False)]
    found: list[list[dict[str, Any]]] = [[] for _ in configs]
    for number in range(1, rounds + 1):
        for rows, config in zip(found, configs, strict=True):
            work, fields, cold, processes, isolated, awake, servers = config
            placed = {"isolated": isolated, "awake": awake, "servers": servers}
            label = f"{work}, {'cold' if cold else 'warm'}, processes={processes}"
            label += f"{gil.placement(placed)}, round {number}/{rounds}"
            print(f"(h) GIL held, {label} ...", file=sys.stderr, flush=True)
            figures = gil.measure(
                root,
                cold=cold,
                processes=processes,
                threads=threads,
                fields=fields,
                seconds=seconds,
                pace=pace,
                isolated=isolated,
                awake=awake,
                servers=servers,
            )
            rows.append({"work": work, "cold": cold, "processes": processes, **placed} | figures)
    return [gil.median_round(rows) for rows in found]


def summarize(
    figures: list[dict[str, Figures]], transports: list[dict[str, float]]
) -> dict[str, Any]:
    """Each round's images/s and MB/s, and their medians (what the ratios compare)."""
    rates = {
        letter: [round(f[letter].images_per_s, 1) for f in figures] for letter in sorted(figures[0])
    }
    transport = {
        key: round(statistics.median(t[key] for t in transports), 1)
        for key in (transports[0] if transports else {})
    }
    return {
        "rounds": len(figures),
        "images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "images_per_s_by_round": rates,
        "images_timed": {k: v.images for k, v in sorted(figures[0].items())},
        "transport": transport,
        "transport_by_round": transports,
    }


def _round(
    root: Path,
    batches: int,
    threads: int,
    only: str,
    label: str,
    profile: dict[str, dict[str, float]],
) -> dict[str, Figures]:
    """One measurement of each contender (a-f) in ``only``."""
    figures: dict[str, Figures] = {}

    def step(letter: str, make: Callable[[], Figures]) -> None:
        if letter in only:
            print(f"({letter}) {NAMES[letter]}, {label} ...", file=sys.stderr, flush=True)
            figures[letter] = make()

    from . import ours

    step("d", lambda: ours.in_fresh_process(root, threads, batches))
    if "e" in only or "f" in only:
        # A fresh server each round: its first epoch decodes every image (cold), the next
        # finds them all in its decoded-image cache (warm).
        with serve(root, threads) as server:
            stream = ours.served(server.url)
            per_epoch = -(-len(list(root.rglob("*.jpg"))) // BATCH)
            cold = measure(stream, min(batches, per_epoch - 1))
            for _ in range(per_epoch - 1 - min(batches, per_epoch - 1)):
                next(stream)
            after_cold = ours.stage_seconds(server.url)
            step("e", lambda: cold)
            step("f", lambda: measure(stream, batches, warmup=0))
            stream.close()
            after_warm = ours.stage_seconds(server.url)
            profile["cold"] = _per_image(after_cold, {}, per_epoch * BATCH)
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
    return figures


def _transport(batches: int, label: str) -> dict[str, float]:
    """(g): MB/s of ready frames over HTTP (a server process) and over a raw socket."""
    from . import transport as g

    print(f"(g) transport, {label} ...", file=sys.stderr, flush=True)
    port = free_port()
    command = [sys.executable, "-m", g.__name__, str(port), str(batches)]
    with running(command, port, "/docs") as server:
        http = g.http_transport(server.url, batches)
    raw = g.raw_socket(http.nbytes)
    return {"http_mb_s": http.mb_per_s, "raw_socket_mb_s": raw.mb_per_s}


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
    lines = [
        "| | contender | images/s (median) | each round |",
        "|---|---|---|---|",
    ]
    for letter, rate in result["images_per_s"].items():
        each = ", ".join(f"{r:.0f}" for r in result["images_per_s_by_round"][letter])
        lines.append(f"| ({letter}) | {NAMES[letter]} | {rate:.0f} | {each} |")
    transport = result["transport"]
    if transport:
        each = ", ".join(
            f"{t['http_mb_s']:.0f} / {t['raw_socket_mb_s']:.0f}"
            for t in result["transport_by_round"]
        )
        lines.append(
            f"| (g) | transport: ready frames over loopback HTTP / raw socket, MB/s | "
            f"{transport['http_mb_s']:.0f} / {transport['raw_socket_mb_s']:.0f} | {each} |"
        )
    for when, stages in result["server_ms_per_image"].items():
        spent = ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items())
        lines.append(f"\nserver worker ms per image, {when}: {spent}")
    lines.append("")
    for mine, theirs, ratio, target, met in ratios(result):
        versus = theirs if theirs == "raw socket" else f"({theirs})"
        verdict = "met" if met else f"MISSED by {target - ratio:.2f}"
        lines.append(f"- ({mine}) / {versus} = {ratio:.2f} (target >= {target}): {verdict}")
    if result.get("gil"):
        from .gil import report as gil_report

        lines += ["", gil_report(result["gil"], result.get("gil_wake_penalty"))]
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
    parser.add_argument("--only", default="abcdefgh", help="contenders to run, e.g. 'ade'")
    parser.add_argument(
        "--gil-seconds", type=float, default=6.0, help="(h) sampling window per setting (6)"
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="(h) the client reads at this fraction of its unpaced rate (1: unpaced)",
    )
    parser.add_argument("--transport-batches", type=int, default=200, help="(200)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="measure every contender this many times, in turn; report the medians (5)",
    )
    parser.add_argument("--data", type=Path, help="keep the generated images here for next time")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    # TensorFlow's start-up chatter would bury the table.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The contenders that run in their own interpreters (``-m benchmarks.comparison.ours``)
    # find this checkout wherever the comparison was started from.
    checkout = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = checkout if not path else checkout + os.pathsep + path
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "imagenet-like"
        ensure_dataset(root, args.images)
        result = run(
            root,
            args.batches,
            args.threads,
            args.only,
            args.transport_batches,
            args.rounds,
            args.gil_seconds,
            args.pace,
        )
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps({**result, "ratios": ratios(result)}, indent=2) + "\n")
    return 0
