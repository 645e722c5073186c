"""Identical streams against different ones: 1, 4 and 8 trainers streaming the benchmark's
work from one server process, with one seed (a sweep: the batch cache makes each batch once)
or a seed each (every batch made for its stream), in one run.

    .venv/bin/python -m benchmarks.shared [--images 1000] [--threads 2] [--rounds 3] [--data DIR]

Each trainer is a process of its own (as trainers are), reading one epoch through the client
(compact frames expanded to float32, as ``fit`` gets them). The decoded-image cache is warmed
first, so both kinds pay for augmenting and sending, not decoding; every setting of every
round uses seeds not used before, so no batch is found from an earlier setting. It prints
the median images per second in total (trainers x images / wall time), each round's, and the
augment stages the server counted (batches made). On a small machine the trainers compete
with the server for the cores: the figures are this machine's, with that said.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from augstream import Client
from benchmarks.comparison.dataset import ensure_dataset
from benchmarks.comparison.process import serve
from benchmarks.comparison.work import SPEC

TRAINERS = (1, 4, 8)
#: Barriers and queues of the trainer processes (spawned: no server state forked into them).
_CONTEXT = multiprocessing.get_context("spawn")


def _trainer(url: str, spec: dict[str, Any], start: Any, done: Any) -> None:
    start.wait()
    images = 0
    with Client(url) as client, client.stream(**spec) as stream:
        for _ in range(len(stream)):
            images += len(stream.next_batch(timeout=300).x)
    done.put(images)


def augments(url: str) -> float:
    """Batches the server has augmented so far."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts = (
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "augstream_stage_seconds_count" and sample.labels["stage"] == "augment"
    )
    return next(counts, 0.0)


def run(url: str, specs: list[dict[str, Any]]) -> tuple[float, float]:
    """Images per second in total for ``specs`` streamed at once, and batches made."""
    start = _CONTEXT.Barrier(len(specs) + 1)
    done = _CONTEXT.Queue()
    trainers = [_CONTEXT.Process(target=_trainer, args=(url, spec, start, done)) for spec in specs]
    for trainer in trainers:
        trainer.start()
    made = augments(url)
    start.wait()  # every trainer is up (imports done): the clock starts
    started = time.perf_counter()
    images = sum(done.get(timeout=600) for _ in trainers)
    elapsed = time.perf_counter() - started
    for trainer in trainers:
        trainer.join()
    return images / elapsed, augments(url) - made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, help="keep the generated images here for next time")
    args = parser.parse_args()
    seeds = itertools.count(100)
    rates: dict[tuple[str, int], list[float]] = {}
    made: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "imagenet-like"
        ensure_dataset(root, args.images)
        base = {**SPEC, "dataset": root.name, "epochs": 1}
        with serve(root, args.threads) as server:
            run(server.url, [{**base, "seed": next(seeds)}])  # decode every image once
            for _ in range(args.rounds):
                for n in TRAINERS:
                    seed = next(seeds)
                    for kind, specs in (
                        ("identical", [{**base, "seed": seed}] * n),
                        ("different", [{**base, "seed": next(seeds)} for _ in range(n)]),
                    ):
                        rate, batches = run(server.url, specs)
                        rates.setdefault((kind, n), []).append(rate)
                        made[kind, n] = batches
    print(
        f"{args.images} JPEGs 500x375 -> 224x224 float32, batch 32, rotation/shift/zoom/flip; "
        f"one server, {args.threads} threads; each trainer a process reading one epoch; "
        f"median of {args.rounds} rounds"
    )
    print("| trainers | kind | images/s in total | rounds | batches made (last round) |")
    print("|---|---|---|---|---|")
    for (kind, n), found in sorted(rates.items(), key=lambda item: (item[0][1], item[0][0])):
        each = ", ".join(f"{rate:.0f}" for rate in found)
        print(f"| {n} | {kind} | {statistics.median(found):,.0f} | {each} | {made[kind, n]:.0f} |")


if __name__ == "__main__":
    main()
