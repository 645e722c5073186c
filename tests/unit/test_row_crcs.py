"""A batch whose images the worker processes checksummed as they wrote them: the frame's CRC is
combined from theirs (the server does not read the batch again), and the frame is the same
bytes as one checksummed whole; where the server changed the images after (mixup, a sample
left out), it checksums them itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import ROW_CRCS, FrameDecoder, crc32, decode_batch
from augstream_service.batching import allocate_images
from augstream_service.catalog import Catalog
from augstream_service.limits import Limits
from augstream_service.making import make_samples
from augstream_service.pipeline import Maker, StreamPlan, make_plan
from augstream_service.reader import ImageReader
from augstream_service.uploads import UploadStore

pytestmark = pytest.mark.skipif(not ROW_CRCS, reason="needs zlib-ng's crc32_combine")


def _worker_like(fail: frozenset[int] = frozenset()) -> Maker:
    """A maker as the worker processes are: it makes the samples here and returns each
    image's CRC-32 (``fail``: sample ids it reports as not made)."""

    def make(plan: StreamPlan, epoch: int, ids: list[int], dtype: str) -> Any:
        x = allocate_images(len(ids), plan.spec, dtype)
        errors, seconds = make_samples(plan.spec, plan.source, epoch, ids, x, None, range(len(ids)))
        errors = ["unreadable" if i in fail else e for i, e in zip(ids, errors, strict=True)]
        crcs = [crc32(row) if e is None else None for row, e in zip(x, errors, strict=True)]
        return x, None, errors, seconds, crcs

    return make


def _plan(root: Path, tmp: Path, maker: Maker | None, **fields: Any) -> StreamPlan:
    spec = StreamSpec.model_validate(
        {"dataset": "pets", "target_size": (20, 16), "batch_size": 4, "seed": 3, **fields}
    )
    store = UploadStore(tmp, max_upload_bytes=1 << 20, max_total_bytes=1 << 21)
    catalog = Catalog.from_folders([root], "skip")
    return make_plan(spec, catalog, store, Limits(), ImageReader(0, 0), maker=maker)


def _frame(plan: StreamPlan, batch: int) -> bytes:
    return b"".join(bytes(part) for part in plan.encode_batch(1, batch).parts)


@pytest.mark.parametrize(
    "fields",
    [{"rotation_range": 20, "horizontal_flip": True}, {"mixup_alpha": 0.4}],
    ids=["plain", "mixup"],
)
def test_the_workers_crcs_make_the_frame_the_server_would_checksum_whole(
    image_root: Path, tmp_path: Path, fields: dict[str, Any]
) -> None:
    pooled = _plan(image_root, tmp_path, _worker_like(), **fields)
    here = _plan(image_root, tmp_path, None, **fields)
    produced = pooled.produce_batch(1, 2)
    if "mixup_alpha" in fields:  # the images were mixed after the workers made them
        assert produced.row_crcs is None
    else:
        assert produced.row_crcs == {"x": [crc32(row) for row in produced.arrays["x"]]}
    for batch in range(3):
        frame = _frame(pooled, batch)
        assert frame == _frame(here, batch)
        (decoded,) = FrameDecoder().feed(frame)  # its CRC checks out
        assert decode_batch(decoded.body).batch == batch


def test_a_batch_with_a_sample_left_out_is_checksummed_by_the_server(
    image_root: Path, tmp_path: Path
) -> None:
    probe = _plan(image_root, tmp_path, None).produce_batch(1, 0)
    left_out = probe.sample_ids[1]
    pooled = _plan(image_root, tmp_path, _worker_like(frozenset({left_out})))
    produced = pooled.produce_batch(1, 0)
    assert [i for i, _ in produced.skipped] == [left_out] and produced.row_crcs is None
    (decoded,) = FrameDecoder().feed(_frame(pooled, 0))
    got = decode_batch(decoded.body)
    assert left_out not in got.sample_ids
    assert np.array_equal(got.arrays["x"], produced.arrays["x"])
