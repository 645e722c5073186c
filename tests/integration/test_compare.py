"""``augstream bench --compare`` end to end, at toy size: every contender runs (Keras'
ImageDataGenerator, tf.data, tf.data service, augstream in process and served, the
transport), the table prints and the JSON holds every figure and ratio. Speed is the
benchmark's business, not this test's: it only checks that the comparison works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_comparison_runs_every_contender(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("augstream")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "augstream._cli"]
    figures = tmp_path / "figures.json"
    command = ["bench", "--compare", "--images", "70", "--batches", "1"]
    command += ["--transport-batches", "4", "--data", str(tmp_path / "data")]
    result = subprocess.run(
        [*launcher, *command, "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(figures.read_text())
    assert set(found["images_per_s"]) == set("abcdef")
    assert all(rate > 0 for rate in found["images_per_s"].values())
    assert found["images_timed"]["a"] == 32  # one timed batch of 32 after the warm-up
    assert found["transport"]["http_mb_s"] > 0 and found["transport"]["raw_socket_mb_s"] > 0
    assert [(r[0], r[1]) for r in found["ratios"]] == [
        ("e", "a"),
        ("e", "b"),
        ("e", "c"),
        ("e", "d"),
        ("f", "a"),
        ("g", "raw socket"),
    ]
    assert "| (e) | augstream served over loopback HTTP, cold |" in result.stdout
    assert len(list((tmp_path / "data").rglob("*.jpg"))) == 70  # kept for the next run


def test_compare_refuses_an_unknown_option() -> None:
    from augstream._cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--compare", "--no-such-option"])
    assert exit_info.value.code == 2
