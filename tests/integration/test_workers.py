"""Data-parallel training over several workers: each worker process reads its own part of
every epoch, told by the framework's environment; together they read each sample once, in
the same number of steps each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKERS = 2
EPOCHS = 2
#: One trainer worker: the front end as a user writes it, with nothing about shards.
WORKER = """
import json, os
os.environ["KERAS_BACKEND"] = "jax" if {jax} else os.environ.get("KERAS_BACKEND", "tensorflow")
from augstream import ImageDataGenerator
train = ImageDataGenerator(server={url!r}).flow_from_directory(
    "pets", target_size=(8, 8), batch_size=3, seed=11
)
epochs = [[train.batch(e, b).sample_ids for b in range(len(train))] for e in range({epochs})]
train.close()
print(json.dumps({{"steps": len(train), "epochs": epochs}}))
"""


def _has_jax() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def test_worker_processes_split_every_epoch_with_equal_steps(server_url: str) -> None:
    code = WORKER.format(url=server_url, epochs=EPOCHS, jax=_has_jax())
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": str(WORKERS),
                "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
            },
            cwd=Path(__file__).parents[2],
        )
        for index in range(WORKERS)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0
        results.append(json.loads(out.splitlines()[-1]))
    # pets: 19 images in 2 shards of 10 and 9, batches of 3: 4 steps each, the second shard
    # splitting its last full batch in two (3, 3, 2, 1) where it would have had 3.
    assert [r["steps"] for r in results] == [4] * WORKERS
    for epoch in range(EPOCHS):
        sizes = [tuple(len(batch) for batch in r["epochs"][epoch]) for r in results]
        assert sizes == [(3, 3, 3, 1), (3, 3, 2, 1)]  # no worker waits for a batch another lacks
        ids = [i for r in results for batch in r["epochs"][epoch] for i in batch]
        assert sorted(ids) == list(range(19))  # every sample once, each epoch
    assert results[0]["epochs"][0] != results[0]["epochs"][1]  # and a new order each epoch


@pytest.mark.keras
def test_a_sharded_tf_dataset_is_not_sharded_again(server_url: str) -> None:
    """Under ``MultiWorkerMirroredStrategy``, ``tf.distribute`` shards a dataset by elements
    unless it says it is sharded already: each worker would keep one batch in ``count``."""
    tf = pytest.importorskip("tensorflow")
    from augstream import Client
    from augstream.tf import as_dataset

    policy = tf.data.experimental.AutoShardPolicy
    spec = dict(dataset="pets", target_size=(8, 8), batch_size=3, epochs=1, seed=2)
    with Client(server_url) as client:
        for shard, expected in (((0, 1), policy.AUTO), ((1, 2), policy.OFF)):
            with client.stream(**spec, shard={"index": shard[0], "count": shard[1]}) as stream:
                options = as_dataset(stream).options().experimental_distribute
                assert options.auto_shard_policy == expected


def test_equal_shards_that_cannot_serve_every_sample_are_refused(server_url: str) -> None:
    # 19 images in shards of 10 and 9 cannot both run 10 steps of one sample: a 422 that says
    # what to change, before any batch.
    import httpx

    body = {"dataset": "pets", "target_size": [8, 8], "batch_size": 1,
            "shard": {"index": 1, "count": 2, "equal": True}}  # fmt: skip
    response = httpx.post(f"{server_url}/v1/stream", json=body, timeout=30)
    assert response.status_code == 422
    assert "batch_size of 2 or more, or drop_remainder" in response.text
    body["shard"] = {"index": 1, "count": 2, "equal": True, "drop_remainder": True}
    with httpx.stream("POST", f"{server_url}/v1/stream", json=body, timeout=30) as streamed:
        assert streamed.status_code == 200
