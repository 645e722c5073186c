"""``augstream bench --compare`` end to end, at toy size: the contenders run (Keras'
ImageDataGenerator, tf.data, augstream in process and served, the transport), the table
prints and the JSON holds every figure and ratio. Speed is the
benchmark's business, not this test's: it only checks that the comparison works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_comparison_runs_its_contenders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from augstream._cli import main

    figures = tmp_path / "figures.json"
    # tf.data service (c) is left out here only to keep CI short: it runs (b)'s pipeline
    # behind two more servers, and (b)'s code is the part that could break.
    command = ["bench", "--compare", "--images", "70", "--batches", "1", "--only", "abdefg"]
    command += ["--transport-batches", "4", "--rounds", "1", "--data", str(tmp_path / "data")]
    assert main([*command, "--json", str(figures)]) == 0
    found = json.loads(figures.read_text())
    assert set(found["images_per_s"]) == set("abdef")
    assert all(rate > 0 for rate in found["images_per_s"].values())
    assert all(len(rates) == 1 for rates in found["images_per_s_by_round"].values())
    assert found["images_timed"]["a"] == 32  # one timed batch of 32 after the warm-up
    assert found["transport"]["http_mb_s"] > 0 and found["transport"]["raw_socket_mb_s"] > 0
    assert set(found["server_ms_per_image"]["cold"]) >= {"read", "decode", "augment", "encode"}
    assert [(r[0], r[1]) for r in found["ratios"]] == [
        ("e", "a"),
        ("e", "b"),
        ("e", "d"),
        ("f", "a"),
        ("g", "raw socket"),
    ]
    assert "| (e) | augstream served over loopback HTTP, cold |" in capsys.readouterr().out
    assert len(list((tmp_path / "data").rglob("*.jpg"))) == 70  # kept for the next run


def test_compare_refuses_an_unknown_option() -> None:
    from augstream._cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--compare", "--no-such-option"])
    assert exit_info.value.code == 2


def test_the_figures_compared_are_each_rounds_medians() -> None:
    from benchmarks.comparison.run import summarize
    from benchmarks.comparison.timing import Figures

    rounds = [
        {"d": Figures(100, 1.0, 0), "e": Figures(100, 2.0, 0)},
        {"d": Figures(100, 0.5, 0), "e": Figures(100, 1.0, 0)},
        {"d": Figures(100, 0.25, 0), "e": Figures(100, 4.0, 0)},
    ]
    transports = [
        {"http_mb_s": 9.0, "raw_socket_mb_s": 20.0},
        {"http_mb_s": 1.0, "raw_socket_mb_s": 10.0},
    ]
    found = summarize(rounds, transports)
    assert found["images_per_s_by_round"] == {"d": [100, 200, 400], "e": [50, 100, 25]}
    assert found["images_per_s"] == {"d": 200, "e": 50}
    assert found["transport"] == {"http_mb_s": 5.0, "raw_socket_mb_s": 15.0}
    assert found["rounds"] == 3 and found["images_timed"] == {"d": 100, "e": 100}
