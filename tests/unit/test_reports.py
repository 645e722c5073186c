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
def test_a_batchs_outcome_lies_after_its_arrays_and_keeps_off_them(
    shape: tuple[int, ...], dtype: str, masks: tuple[int, ...] | None
) -> None:
    outcome = outcome_at(shape, dtype, masks, workers=3)
    arrays = np.prod(shape) * np.dtype(dtype).itemsize + (np.prod(masks) if masks else 0)
    assert outcome.offset >= arrays and outcome.offset % 8 == 0
    block = np.zeros(outcome.end, dtype=np.uint8)
    views = outcome.views(block)
    views.seconds[2] = [1.5, 0.25, 0.125]
    views.crcs[:] = 0xFFFFFFFF
    views.known[:] = 1
    assert not block[:arrays].any()  # the images and masks untouched
    assert views.seconds.tolist()[2] == [1.5, 0.25, 0.125] and not views.seconds[:2].any()
    assert views.crcs.tolist() == [0xFFFFFFFF] * shape[0] and views.known.all()
    assert block[outcome.offset :].any() and block[-1] == 1  # the block ends with them
