"""The batch's transforms drawn at once are bit for bit the ones drawn one sample at a time:
numpy's SeedSequence and PCG64 redone with arrays, Keras' draws in their order, the affine
matrices from the same products. Any difference would change the bytes of every stream."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from augstream_protocol.spec import StreamSpec
from augstream_service import sampling
from augstream_service.augment import affine_matrix, sample
from augstream_service.augment.batched import draw, eligible, matrices
from augstream_service.augment.streams import SampleStreams

KEY = sampling._SAMPLE_KEY


def _hex(values: Any) -> list[str]:
    return [float(v).hex() for v in values]


@pytest.mark.parametrize(
    ("seed", "epoch"),
    [(0, 0), (1, 3), (2**31 - 1, 7), (2**32, 1), (2**40 + 5, 2**32 + 3), (2**63 - 1, 0)],
)
def test_the_batchs_streams_are_numpys_streams(seed: int, epoch: int) -> None:
    ids = [0, 1, 17, 4095, 65_537, 2**31 - 1]
    streams = SampleStreams(KEY, seed, epoch, ids)
    mine = [streams.uniform(-20.0, 20.0), streams.doubles(), streams.uniform(0.9, 1.1)]
    for column, sample_id in enumerate(ids):
        rng = sampling.sample_rng(seed, epoch, sample_id)
        want = [rng.uniform(-20.0, 20.0), rng.random(), rng.uniform(0.9, 1.1)]
        assert _hex(m[column] for m in mine) == _hex(want), f"sample {sample_id}"


SPECS = [
    {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1,
     "zoom_range": 0.1, "horizontal_flip": True},
    {"rotation_range": 40, "shear_range": 15, "zoom_range": [0.5, 1.5], "vertical_flip": True,
     "width_shift_range": 3.5, "height_shift_range": 0.25},
    {"channel_shift_range": 30, "brightness_range": [0.5, 1.5], "horizontal_flip": True},
    {"rotation_range": 10, "width_shift_range": 0.2, "height_shift_range": 0.05,
     "compat": "keras-legacy"},
    {"zoom_range": 0.3},
    {},
]  # fmt: skip


@pytest.mark.parametrize("fields", SPECS)
def test_a_batch_drawn_at_once_is_the_samples_drawn_one_by_one(fields: dict[str, Any]) -> None:
    spec = StreamSpec.model_validate({"dataset": "x", "seed": 5, **fields})
    assert eligible(spec)
    rng = random.Random(str(fields))
    for shape in ((224, 224, 3), (48, 64, 1), (31, 17, 3)):
        for epoch in (0, 4):
            ids = sorted(rng.sample(range(100_000), 24))
            together = draw(spec, KEY, 5, epoch, ids, shape)
            one_by_one = [sample(sampling.sample_rng(5, epoch, i), spec, shape) for i in ids]
            assert together == one_by_one
            legacy = spec.compat == "keras-legacy"
            stacked = matrices(together, shape[0], shape[1], legacy_centre=legacy)
            each = np.stack(
                [affine_matrix(p, shape[0], shape[1], legacy_centre=legacy) for p in together]
            )
            assert stacked.tobytes() == each.tobytes()


@pytest.mark.parametrize(
    "fields",
    [
        {"width_shift_range": 3},  # whole pixels: integers drawn
        {"height_shift_range": [0.1, 0.2]},  # a list of choices
        {"rotation_range": 10, "blur_sigma_range": [0.5, 1.0]},  # an operation beyond Keras'
        {"random_crop_fraction": 0.8},
    ],
)
def test_other_draws_are_left_to_the_one_by_one_path(fields: dict[str, Any]) -> None:
    assert not eligible(StreamSpec.model_validate({"dataset": "x", **fields}))


BATCH_SPECS = [
    {"rotation_range": 25, "width_shift_range": 0.1, "zoom_range": 0.2, "horizontal_flip": True},
    {"rotation_range": 15, "shear_range": 10, "fill_mode": "reflect", "rescale": 1 / 255},
    {"channel_shift_range": 40, "brightness_range": [0.6, 1.4], "vertical_flip": True},
    {"width_shift_range": 0.2, "height_shift_range": 0.1, "compat": "keras-legacy"},
    {"rotation_range": 30, "color_mode": "grayscale", "interpolation_order": 0},
]


@pytest.mark.parametrize("fields", BATCH_SPECS)
def test_the_pipelines_batches_are_the_bytes_of_samples_drawn_one_by_one(
    fields: dict[str, Any], image_root: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole batches, through the pipeline: drawn together, and with the batched path off."""
    from augstream_service.catalog import Catalog
    from augstream_service.limits import Limits
    from augstream_service.pipeline import make_plan
    from augstream_service.reader import ImageReader
    from augstream_service.uploads import UploadStore

    spec = StreamSpec.model_validate(
        {"dataset": "pets", "target_size": (40, 32), "batch_size": 5, "seed": 8, **fields}
    )
    store = UploadStore(tmp_path, max_upload_bytes=1 << 20, max_total_bytes=1 << 21)

    def batches() -> list[bytes]:
        plan = make_plan(
            spec, Catalog.from_folders([image_root]), store, Limits(), ImageReader(0, 0)
        )
        made = [plan.produce_batch(epoch, batch) for epoch in (0, 1) for batch in range(4)]
        return [b"".join(a.tobytes() for a in m.arrays.values()) for m in made]

    together = batches()
    monkeypatch.setattr("augstream_service.augment.batched.eligible", lambda spec: False)
    assert batches() == together
