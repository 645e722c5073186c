"""What the worker processes report through shared memory (``reports``): each worker's cache
figures read back as its reader gave them, and a batch's outcome laid after its arrays
without touching them."""

from __future__ import annotations

import numpy as np
import pytest

from augstream_service.reader import ImageReader
from augstream_service.reports import FiguresBoard, outcome_at


def test_a_workers_figures_read_back_as_its_reader_gave_them() -> None:
    reader = ImageReader(1 << 20, 1 << 20)
    reader.decodes, reader.reads = 7, 3
    reader.images.get("missing")  # a miss to count
    figures = reader.figures()
    buffer = bytearray(FiguresBoard.size(3))
    board = FiguresBoard(buffer, 3)
    assert board.read(1) is None  # nothing written yet
    board.write(1, figures)
    assert board.read(1) == figures
    assert board.read(0) is None and board.read(2) is None  # its row only
    board.clear(1)
    assert board.read(1) is None


@pytest.mark.parametrize(
    ("shape", "dtype", "masks"),
    [((5, 3, 3, 3), "uint8", None), ((4, 2, 3, 1), "float32", (4, 2, 3, 1))],
)
def test_a_batchs_outcome_lies_after_its_arrays_and_reads_back_its_owners_parts(
    shape: tuple[int, ...], dtype: str, masks: tuple[int, ...] | None
) -> None:
    outcome = outcome_at(shape, dtype, masks, workers=3)
    arrays = np.prod(shape) * np.dtype(dtype).itemsize + (np.prod(masks) if masks else 0)
    assert outcome.offset >= arrays and outcome.offset % 8 == 0
    block = np.full(outcome.end, 0xAB, dtype=np.uint8)  # a reused block: not zeros
    slots = list(range(shape[0]))
    outcome.write(block, 0, slots[::2], [0xFFFFFFFF, None, 7][: len(slots[::2])], [1.5, 0.25, 0])
    outcome.write(block, 2, slots[1::2], [5] * len(slots[1::2]), [0.5, 0.125, 2e-9])
    assert (block[:arrays] == 0xAB).all()  # the images and masks untouched
    crcs, seconds = outcome.read(block, [0, 2])  # worker 1 owned nothing: its row is stale
    expected: list[int | None] = [None] * len(slots)
    expected[::2] = [0xFFFFFFFF, None, 7][: len(slots[::2])]
    expected[1::2] = [5] * len(slots[1::2])
    assert crcs == expected
    assert seconds == [2.0, 0.375, 2e-9]
    assert outcome.end == block.size  # the block ends with it
