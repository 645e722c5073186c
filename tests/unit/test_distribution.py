"""Data-parallel workers: which part of each epoch a worker reads, and equal shards."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from augstream._distribution import front_shard, shard_from_environment
from augstream_protocol.fields import Shard
from augstream_service.sampling import batch_indices, batches_per_epoch, shard_size


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "4", "KERAS_DISTRIBUTION_PROCESS_ID": "2"}, (2, 4)),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "4"}, None),
        (
            {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1", "c:1"]},
                                      "task": {"type": "worker", "index": 1}})},
            (1, 3),
        ),
        (
            {"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                                      "task": {"type": "worker", "index": 1}})},
            (2, 3),
        ),
        (
            {"TF_CONFIG": json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                                      "task": {"type": "chief", "index": 0}})},
            (0, 2),
        ),
        (
            {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "evaluator": ["e:1"]},
                                      "task": {"type": "evaluator", "index": 0}})},
            None,
        ),
        ({"TF_CONFIG": "{not json"}, None),
    ],
)  # fmt: skip
def test_the_frameworks_environment_names_the_worker(
    environ: dict[str, str], expected: tuple[int, int] | None
) -> None:
    found = shard_from_environment(environ)
    assert (found[0] if found else None) == expected


def test_a_distributed_jax_is_asked_when_it_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        distributed=types.SimpleNamespace(is_initialized=lambda: True),
        process_index=lambda: 1,
        process_count=lambda: 2,
    )
    monkeypatch.setitem(sys.modules, "jax", fake)
    assert shard_from_environment({}) == ((1, 2), "jax.process_index()")


def test_the_front_end_asks_for_equal_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert front_shard(None) == {"index": 1, "count": 3, "equal": True}
    assert front_shard((0, 2)) == {"index": 0, "count": 2, "equal": True}
    assert front_shard((0, 1)) == {"index": 0, "count": 1, "equal": False}  # whole epochs
    given = Shard(index=1, count=2)
    assert front_shard(given) is given
    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES")
    assert front_shard(None) is None


@pytest.mark.parametrize(
    ("n", "count", "batch_size"), [(19, 3, 2), (20, 4, 3), (7, 7, 1), (101, 8, 5)]
)
def test_equal_shards_take_the_same_count_and_never_overlap(
    n: int, count: int, batch_size: int
) -> None:
    per_shard = {shard_size(n, i, count, equal=True) for i in range(count)}
    steps = {batches_per_epoch(n, batch_size, i, count, equal=True) for i in range(count)}
    assert per_shard == {n // count} and len(steps) == 1
    left_out = []
    for epoch in range(3):
        shards = [
            [
                batch_indices(n, seed=3, epoch=epoch, batch=b, batch_size=batch_size,
                              shuffle=True, shard_index=i, shard_count=count, equal=True)
                for b in range(next(iter(steps)))
            ]
            for i in range(count)
        ]  # fmt: skip
        # Every worker's batches have the same sizes, step by step.
        assert len({tuple(len(batch) for batch in shard) for shard in shards}) == 1
        flat = np.concatenate([batch for shard in shards for batch in shard]).tolist()
        assert len(flat) == len(set(flat)) == count * (n // count)
        left_out.append(sorted(set(range(n)) - set(flat)))
    if n % count:
        assert len({tuple(x) for x in left_out}) > 1  # other samples each epoch


def test_a_spec_keeps_its_bytes_when_shards_are_not_equal() -> None:
    from augstream_protocol.spec import StreamSpec

    spec = StreamSpec(dataset="pets", shard=(1, 4))
    assert spec.request_body()["shard"] == {"index": 1, "count": 4}
    assert StreamSpec(dataset="pets", shard={"index": 1, "count": 4, "equal": True}).shard.equal
