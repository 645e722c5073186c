"""Data-parallel workers: which part of each epoch a worker reads, and equal shards."""

from __future__ import annotations

import json
import sys
import types

import pytest

from augstream._distribution import front_shard, shard_from_environment
from augstream_protocol.fields import Shard
from augstream_service.sampling import (
    batch_indices,
    batches_per_epoch,
    equal_shards_fit,
    shard_size,
)


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


def _epochs(n: int, count: int, batch_size: int, **mode: bool) -> list[list[list[list[int]]]]:
    """Three epochs of every shard's batches, as sample ids."""
    steps = {batches_per_epoch(n, batch_size, i, count, **mode) for i in range(count)}
    assert len(steps) == 1, f"shards with different step counts: {steps}"
    return [
        [
            [
                batch_indices(n, seed=3, epoch=epoch, batch=b, batch_size=batch_size,
                              shuffle=True, shard_index=i, shard_count=count, **mode).tolist()
                for b in range(next(iter(steps)))
            ]
            for i in range(count)
        ]
        for epoch in range(3)
    ]  # fmt: skip


CASES = [(19, 3, 2), (20, 4, 3), (7, 7, 2), (101, 8, 5), (17, 2, 4), (9, 2, 4), (64, 8, 8)]


@pytest.mark.parametrize(("n", "count", "batch_size"), CASES)
def test_equal_shards_run_the_same_steps_and_serve_every_sample_once(
    n: int, count: int, batch_size: int
) -> None:
    assert equal_shards_fit(n, batch_size, count)
    for epoch in _epochs(n, count, batch_size, equal=True):
        flat = [i for shard in epoch for batch in shard for i in batch]
        assert sorted(flat) == list(range(n))  # each sample once, in every epoch
        assert all(batch for shard in epoch for batch in shard)  # no step without samples
        # As many as batch_size a step, and only a shard a sample short splits one in two.
        sizes = [[len(batch) for batch in shard] for shard in epoch]
        assert all(max(s) <= batch_size for s in sizes)
        for s in sizes:
            if -(-sum(s) // batch_size) == len(s):  # Keras' own: full batches, then the rest
                assert s[:-1] == [batch_size] * (len(s) - 1)
            else:  # one batch fewer of its own: its last full one split in two
                assert s[:-2] == [batch_size] * (len(s) - 2) and s[-2:] == [batch_size - 1, 1]


def test_equal_shards_split_a_batch_only_where_a_shard_is_one_sample_short() -> None:
    # 9 samples, 2 shards of 5 and 4, batches of 4: shard 0 is 4 + 1, shard 1 splits its one
    # batch of 4 into 3 + 1 so that both run 2 steps.
    sizes = [[len(b) for b in shard] for shard in _epochs(9, 2, 4, equal=True)[0]]
    assert sizes == [[4, 1], [3, 1]]


def test_equal_shards_need_two_samples_a_batch_where_shards_differ() -> None:
    assert not equal_shards_fit(7, 1, 2)  # shards of 4 and 3 cannot both run 4 steps of 1
    assert equal_shards_fit(8, 1, 2) and not equal_shards_fit(3, 4, 4)


@pytest.mark.parametrize(("n", "count", "batch_size"), [*CASES, (7, 2, 1)])
def test_shards_that_drop_the_remainder_have_steps_of_one_size_and_never_overlap(
    n: int, count: int, batch_size: int
) -> None:
    per_shard = {shard_size(n, i, count, drop=True) for i in range(count)}
    assert per_shard == {n // count}
    left_out = []
    for epoch in _epochs(n, count, batch_size, drop=True):
        # Every worker's batches have the same sizes, step by step.
        assert len({tuple(len(batch) for batch in shard) for shard in epoch}) == 1
        flat = [i for shard in epoch for batch in shard for i in batch]
        assert len(flat) == len(set(flat)) == count * (n // count)
        left_out.append(tuple(sorted(set(range(n)) - set(flat))))
    if n % count:
        assert len(set(left_out)) > 1  # other samples each epoch


def test_a_spec_keeps_its_bytes_when_shards_are_not_equal() -> None:
    from augstream_protocol.spec import StreamSpec

    spec = StreamSpec(dataset="pets", shard=(1, 4))
    assert spec.request_body()["shard"] == {"index": 1, "count": 4}
    assert StreamSpec(dataset="pets", shard={"index": 1, "count": 4, "equal": True}).shard.equal
