"""augstream doing the comparison's work: its pipeline in process (d), and served over
loopback HTTP from an ``augstream serve`` process, cold (e) and warm (f).

(d) runs in a fresh interpreter each time (``python -m benchmarks.comparison.ours``), as
the server does: in the long-lived benchmark process it would inherit a heap that earlier
rounds already grew, and skip the page faults a server pays to fill its cache.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from augstream import Client
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import expand
from augstream_service.catalog import Catalog
from augstream_service.limits import Limits
from augstream_service.pipeline import ProducedBatch, make_plan
from augstream_service.reader import ImageReader
from augstream_service.settings import Settings
from augstream_service.uploads import UploadStore

from .timing import Figures, measure
from .work import SPEC

__all__ = ["in_fresh_process", "in_process", "served", "stage_seconds"]

Array = np.ndarray[Any, Any]


def in_process(root: Path, threads: int, prefetch: int = 4) -> Generator[Array, None, None]:
    """(d) The server's pipeline without HTTP: the same stages on a pool of ``threads``,
    ``prefetch`` batches ahead, with the caches a server has by default (timed in their first
    epoch, as (e) is: every image decoded, and kept), so (e) against (d) is the price of
    HTTP and nothing else."""
    cv2.setNumThreads(1)
    catalog = Catalog.from_folders([root], "error", {}, {})
    defaults = Settings.model_fields
    reader = ImageReader(
        byte_cache_bytes=defaults["byte_cache_bytes"].default,
        image_cache_bytes=defaults["image_cache_bytes"].default,
    )
    # Nothing is uploaded: the store is never written to.
    uploads = UploadStore(root / ".uploads", max_upload_bytes=0, max_total_bytes=0)
    spec = StreamSpec(dataset=root.name, **SPEC)
    plan = make_plan(spec, catalog, uploads, Limits(), reader, compact=True)
    x_entry = plan.header()["arrays"]["x"]
    per_epoch = plan.batches_per_epoch
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[ProducedBatch]] = deque()
        n = 0
        while True:
            while len(pending) < prefetch:
                epoch, batch = divmod(n, per_epoch)
                pending.append(pool.submit(plan.produce_batch, epoch, batch, compact=True))
                n += 1
            # As the server would send it and the client expand it, minus the HTTP between.
            yield expand(pending.popleft().result().arrays["x"], x_entry)


def in_fresh_process(root: Path, threads: int, batches: int) -> Figures:
    """(d) measured in a new interpreter: ``measure(in_process(root, threads), batches)``."""
    command = [sys.executable, "-m", __name__, str(root), str(threads), str(batches)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"(d) failed: {done.stderr.strip()[-2000:]}")
    return Figures(**json.loads(done.stdout.strip().splitlines()[-1]))


def served(url: str, **fields: Any) -> Generator[Array, None, None]:
    """(e, f) Batches from a server over HTTP, through the client library (the benchmark's
    work, plus ``fields``)."""
    spec = {**SPEC, **fields}
    with Client(url) as client, client.stream(dataset=_dataset_name(url), **spec) as stream:
        while True:
            x = stream.next_batch(timeout=300).x
            assert isinstance(x, np.ndarray)
            yield x


def _dataset_name(url: str) -> str:
    with Client(url) as client:
        (dataset,) = client.datasets()
        return dataset.name


def stage_seconds(url: str) -> dict[str, float]:
    """Seconds the server's workers have spent so far in each stage (read, decode, augment,
    encode), from its ``/metrics``: the profile of where served time goes."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "augstream_stage_seconds"
        for sample in family.samples
        if sample.name.endswith("_sum")
    }


if __name__ == "__main__":
    batches = in_process(Path(sys.argv[1]), int(sys.argv[2]))
    try:
        figures = measure(batches, int(sys.argv[3]))
    finally:
        batches.close()
    print(json.dumps(dataclasses.asdict(figures)))
