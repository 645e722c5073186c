"""``benchmarks.fanout``: a measuring process reports the server thread's CPU per batch, and
the report sets the sides beside each other with their ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fanout
from tests.imagefolder import make_image_folder


def test_a_measuring_process_reports_the_server_threads_cpu_per_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "pets", per_class=(11, 11, 11))  # one batch of 32
    argv = ["--one", str(root), "--workers", "2", "--batches", "5", "--size", "16"]
    assert fanout.main(argv) == 0
    figures = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert figures["cpu_us_per_batch"] > 0


def test_the_report_gives_each_sides_median_and_their_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = {("old", 8): [700.0, 900.0, 800.0], ("new", 8): [400.0, 410.0, 390.0]}
    fanout._report(found, ["old", "new"], [8])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| 8 | 800 (25.0) | 400 (12.5) | 0.50 |"
