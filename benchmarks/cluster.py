"""A stream over a cluster of replicas, on this machine, in one run: dynamic assignment
against the fixed stride clients used before, with one replica throttled to a third of the
others' speed; the stall a scale-up, a scale-down (SIGTERM) and a crash (SIGKILL) cost; and
what the portable numerics (baseline CPU code paths, the same bytes on any CPU) cost.

    .venv/bin/python -m benchmarks.cluster [--images 600] [--size 192] [--rounds 3]

Replicas are ``augstream serve`` processes on 127.0.0.2, 127.0.0.3, ... (one port, as pods)
with one worker thread each and their caches off (every image decoded, as on a first epoch);
the slow one sits behind a proxy that passes a third of the bytes one replica sends when
all three stream. The stall part finds the replicas through one name served by a DNS server
on loopback and measures, around each event, the time the consumer waited for batches
beyond its usual wait. On a 2-core machine the replicas share two cores: the ratios, not the
absolute figures, are the point.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from augstream import Client
from augstream._connection import Connection
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import FrameKind, decode_batch
from benchmarks.comparison.process import free_port, serve
from benchmarks.remote_cache import write_images
from tests.cluster import NAME, NameServer
from tests.proxy import CuttingProxy

SPEC: dict[str, Any] = {
    "dataset": "photos",
    "target_size": (128, 128),
    "batch_size": 8,
    "rotation_range": 15,
    "horizontal_flip": True,
    "seed": 3,
}
COLD = {"AUGSTREAM_IMAGE_CACHE_BYTES": "0", "AUGSTREAM_BYTE_CACHE_BYTES": "0"}


def strided(urls: list[str], batches: int) -> Iterator[int]:
    """The fixed stride of clients before 0.2: replica ``i`` streams every ``n``-th batch
    from the ``i``-th on, and the client takes them in turn; yields each batch's images."""
    spec = StreamSpec.model_validate({**SPEC, "epochs": 1_000})
    parts: list[queue.Queue[int]] = [queue.Queue(maxsize=4) for _ in urls]
    stop = threading.Event()

    def read(index: int, url: str) -> None:
        import httpx

        with httpx.Client(base_url=url, timeout=60) as http:
            part = spec.with_start(0, index, stride=len(urls))
            connection = Connection(http, part, {})
            try:
                for frame in connection.frames:
                    if stop.is_set():
                        return
                    if frame.kind == FrameKind.BATCH:
                        parts[index].put(len(decode_batch(frame.body).sample_ids))
            finally:
                connection.close()

    threads = [
        threading.Thread(target=read, args=(i, url), daemon=True) for i, url in enumerate(urls)
    ]
    for thread in threads:
        thread.start()
    try:
        for n in range(batches):
            yield parts[n % len(urls)].get(timeout=120)
    finally:
        stop.set()
        for part in parts:  # unblock readers waiting to put
            while not part.empty():
                part.get_nowait()


def dynamic(urls: list[str], batches: int) -> Iterator[int]:
    """Today's client: ranges to whichever replica is ready."""
    with Client(urls) as client, client.stream(**SPEC) as stream:
        for _ in range(batches):
            yield len(stream.next_batch(timeout=120).sample_ids)


def rate(batches: Iterator[int], warmup: int = 4) -> float:
    """Images per second over the batches after ``warmup``."""
    images, started = 0, 0.0
    for n, count in enumerate(batches):
        if n == warmup:
            started = time.perf_counter()
        elif n > warmup:
            images += count
    return images / (time.perf_counter() - started)


def slow_replica(root: Path, batches: int, rounds: int) -> dict[str, Any]:
    """Three replicas, the third behind a proxy at a third of one replica's pace."""
    with ExitStack() as stack:
        servers = [stack.enter_context(serve(root, 1, COLD)) for _ in range(3)]
        urls = [s.url for s in servers]
        # One replica's share when all three stream, in bytes per second.
        started = time.perf_counter()
        with Client(urls) as client, client.stream(**SPEC) as stream:
            nbytes = sum(stream.next_batch(timeout=120).x.nbytes for _ in range(batches))
        pace = nbytes / (time.perf_counter() - started) / 3
        # The spec's batches are uint8: what the client holds is what travelled.
        proxy = CuttingProxy(int(urls[2].rsplit(":", 1)[1]), lambda _: None, rate=pace / 3)
        stack.callback(proxy.close)
        throttled = [urls[0], urls[1], proxy.url]
        figures: dict[str, list[float]] = {"fixed stride": [], "dynamic": [], "unthrottled": []}
        for _ in range(rounds):
            figures["fixed stride"].append(rate(strided(throttled, batches)))
            figures["dynamic"].append(rate(dynamic(throttled, batches)))
            figures["unthrottled"].append(rate(dynamic(urls, batches)))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {
        "images_per_s": {k: round(v, 1) for k, v in medians.items()},
        "rounds": {k: [round(v, 1) for v in values] for k, values in figures.items()},
        "dynamic_over_stride": round(medians["dynamic"] / medians["fixed stride"], 2),
        "dynamic_over_unthrottled": round(medians["dynamic"] / medians["unthrottled"], 2),
    }


def portable_cost(root: Path, batches: int, rounds: int) -> dict[str, Any]:
    """One replica with native numerics against one with portable numerics (baseline CPU
    code paths), the same work, in turns."""
    figures: dict[str, list[float]] = {"native": [], "portable": []}
    with ExitStack() as stack:
        urls = {
            "native": stack.enter_context(serve(root, 1, COLD)).url,
            "portable": stack.enter_context(
                serve(root, 1, {**COLD, "AUGSTREAM_NUMERICS": "portable"})
            ).url,
        }
        for _ in range(rounds):
            for name, url in urls.items():
                figures[name].append(rate(dynamic([url], batches)))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {
        "images_per_s": {k: round(v, 1) for k, v in medians.items()},
        "rounds": {k: [round(v, 1) for v in values] for k, values in figures.items()},
        "portable_over_native": round(medians["portable"] / medians["native"], 2),
    }


def stalls(root: Path, seconds: float) -> dict[str, Any]:
    """What a scale-up, a scale-down and a crash cost the consumer: the longest wait for one
    batch after the event beyond the usual time between batches, and the rate before and
    after (on 2 cores a third replica competes for the same cores: the rate may drop)."""
    port = free_port()
    dns = NameServer()
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    found: dict[str, Any] = {}
    with ExitStack() as stack:
        stack.callback(dns.close)
        procs = {h: stack.enter_context(serve(root, 1, COLD, host=h, port=port)) for h in hosts[:2]}
        dns.set(*hosts[:2])
        client = stack.enter_context(
            Client(f"http://{NAME}:{port}", nameservers=[dns.nameserver], resolve_every_s=0.5)
        )
        stream = stack.enter_context(client.stream(**SPEC))
        arrivals: list[tuple[float, int]] = []  # (when, images)

        def run(duration: float) -> None:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                images = len(stream.next_batch(timeout=120).sample_ids)
                arrivals.append((time.monotonic(), images))

        def cost(event: float) -> dict[str, float]:
            before = [(t, n) for t, n in arrivals if event - seconds <= t < event]
            after = [(t, n) for t, n in arrivals if t >= event]
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(before)]
            usual = statistics.median(gaps) if gaps else 0.0
            times = [event] + [t for t, _ in after]
            longest = max(b - a for a, b in itertools.pairwise(times))
            return {
                "stall_s": round(max(0.0, longest - usual), 3),
                "images_per_s_before": round(sum(n for _, n in before) / seconds, 1),
                "images_per_s_after": round(sum(n for _, n in after) / seconds, 1),
            }

        run(seconds)
        # Scale-up: a third replica, ready, then listed (a readiness probe's order).
        procs[hosts[2]] = stack.enter_context(serve(root, 1, COLD, host=hosts[2], port=port))
        event = time.monotonic()
        dns.set(*hosts)
        run(seconds)
        found["scale_up"] = cost(event)
        # Scale-down: unlisted, then SIGTERM (preStop, then the kubelet's signal).
        event = time.monotonic()
        dns.set(hosts[0], hosts[2])
        os.kill(procs[hosts[1]].pid, signal.SIGTERM)
        run(seconds)
        found["scale_down"] = cost(event)
        # Crash: SIGKILL, and the name lists it for a second more.
        event = time.monotonic()
        os.kill(procs[hosts[2]].pid, signal.SIGKILL)
        run(1.0)
        dns.set(hosts[0])
        run(seconds - 1.0)
        found["crash"] = cost(event)
        found["batches"] = len(arrivals)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batches", type=int, default=60, help="timed batches per run (60)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="around each event (4)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        write_images(root, args.images, args.size)
        result = {
            "slow_replica": slow_replica(root, args.batches, args.rounds),
            "stalls": stalls(root, args.seconds),
            "portable_numerics": portable_cost(root, args.batches, args.rounds),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
