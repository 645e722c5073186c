"""Cold and warm caches over a bucket: one server, the same images in moto's S3 server and in a
local folder, each streamed for a cold epoch, then three warm ones (every image found decoded).

    .venv/bin/python -m benchmarks.remote_cache [--images 400] [--size 256]

Prints images per second for each pass and the ratios; absolute figures depend on the machine,
the ratios are the point. Needs the ``dev`` extra (moto's server).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from augstream import Client
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.catalog import DatasetConfig
from tests.stores import S3Server

SPEC: dict[str, Any] = {
    "target_size": (128, 128),
    "batch_size": 32,
    "rotation_range": 15,
    "epochs": 1,
}


def write_images(root: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for n in range(count):
        folder = root / f"class{n % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def one_epoch(url: str, dataset: str, seed: int) -> tuple[float, int]:
    started = time.perf_counter()
    images = 0
    with Client(url) as client, client.stream(dataset=dataset, seed=seed, **SPEC) as stream:
        for _ in range(len(stream)):
            images += len(stream.next_batch(timeout=120).sample_ids)
    return images / (time.perf_counter() - started), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, S3Server() as s3:
        root = Path(tmp) / "photos"
        write_images(root, args.images, args.size)
        s3.upload("bench", "photos", root)
        os.environ.update(BENCH_KEY=s3.key, BENCH_SECRET=s3.secret)
        bucket = DatasetConfig(
            url="s3://bench/photos",
            storage_options={"endpoint_url": s3.url},
            storage_options_env={"key": "BENCH_KEY", "secret": "BENCH_SECRET"},
        )
        settings = Settings(datasets=[root], catalog={"bucket": bucket}, threads=os.cpu_count())
        with BackgroundServer(create_app(settings)) as server:
            rows = []
            for dataset in ("photos", "bucket"):
                cold, count = one_epoch(server.url, dataset, seed=1)
                # The best of three warm epochs: on a shared machine the noise only slows.
                warm = max(one_epoch(server.url, dataset, seed=s)[0] for s in (2, 3, 4))
                rows.append((dataset, count, cold, warm))
            figures = httpx.get(f"{server.url}/v1/cache").json()
    print(f"{args.images} JPEGs of {args.size}x{args.size}, streamed at 128x128, batch 32")
    print("| dataset | images | cold cache (img/s) | warm cache (img/s) | warm / cold |")
    print("|---|---|---|---|---|")
    for dataset, count, cold, warm in rows:
        where = "moto S3 server" if dataset == "bucket" else "local folder"
        print(f"| {where} | {count} | {cold:.0f} | {warm:.0f} | {warm / cold:.1f}x |")
    bucket_cold = rows[1][2] / rows[0][2]
    print(f"S3 cold / folder cold: {bucket_cold:.2f}; decodes: {figures['decodes']}")


if __name__ == "__main__":
    main()
