"""The client commands of ``augstream`` (datasets, preview, bench) against live servers."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from augstream._cli import main

PETS_CLASSES = "cat 8, dog 5, fox 6"
SMALL_BENCH = ["--batches", "3", "--batch-size", "4", "--target-size", "32", "32"]


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUGSTREAM_API_KEY", raising=False)


@pytest.fixture(scope="module")
def keyed_url(image_root: Path) -> Iterator[str]:
    """A server of ``pets`` that wants the API key ``secret``."""
    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    settings = Settings(datasets=[image_root], api_keys=["secret"], threads=1)
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture
def silent_url() -> str:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def command_line(command: str, url: str, tmp_path: Path, *extra: str) -> list[str]:
    """A small, fast invocation of ``command``."""
    if command == "datasets":
        return [command, url, *extra]
    if command == "preview":
        grid = str(tmp_path / "grid.png")
        return [command, url, "pets", "-o", grid, "--target-size", "32", "32", *extra]
    return [command, url, "pets", *SMALL_BENCH, *extra]


def failure(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The one line a failed command printed on stderr (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"augstream {command}: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


# --- datasets -----------------------------------------------------------------------------


def test_datasets_prints_an_aligned_table(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", server_url]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "samples", "classes"]
    by_name = {row.split()[0]: row for row in rows}
    assert sorted(by_name) == ["broken", "pets"]
    pets = by_name["pets"]
    assert pets.endswith(PETS_CLASSES) and " 19 " in pets
    samples_end = header.index("samples") + len("samples")
    classes_start = header.index("classes")
    for row in rows:
        assert row[samples_end - 1].isdigit() and row[samples_end] == " "
        assert row[classes_start - 1] == " " and row[classes_start] != " "


def test_datasets_json_is_the_servers_list(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datasets", server_url, "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["pets"]["samples"] == 19
    assert listed["pets"]["class_counts"] == {"cat": 8, "dog": 5, "fox": 6}
    assert listed["pets"]["class_indices"] == {"cat": 0, "dog": 1, "fox": 2}


# --- preview ------------------------------------------------------------------------------


def preview(
    server_url: str, path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[bytes, Any]:
    """Run ``preview`` into ``path``; the PNG's bytes and its decoded pixels."""
    assert main(["preview", server_url, "pets", "-o", str(path), *extra]) == 0
    png = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "not a PNG"
    out = capsys.readouterr().out
    assert f"wrote {path}: {image.shape[1]} x {image.shape[0]} pixels" in out
    return png, image


def test_preview_grid_grows_with_rows_and_cols(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def shape(rows: int, cols: int) -> tuple[int, ...]:
        layout = ["--rows", str(rows), "--cols", str(cols), "--target-size", "32", "32"]
        _, image = preview(server_url, tmp_path / f"{rows}x{cols}.png", capsys, *layout)
        return tuple(image.shape)

    small, tall, wide = shape(2, 2), shape(3, 2), shape(2, 4)
    assert tall[0] > small[0] and tall[1] == small[1]
    assert wide[1] > small[1] and wide[0] == small[0]


def test_preview_is_reproducible_by_seed(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    augment = [
        "--target-size", "48", "48", "--rows", "2", "--cols", "3",
        "--set", "rotation_range=30", "--set", "horizontal_flip=true",
        "--set", "zoom_range=[0.8,1.2]", "--set", "fill_mode=reflect",
    ]  # fmt: skip
    first, _ = preview(server_url, tmp_path / "a.png", capsys, *augment)
    again, _ = preview(server_url, tmp_path / "b.png", capsys, *augment)
    other, _ = preview(server_url, tmp_path / "c.png", capsys, *augment, "--seed", "1")
    assert first == again
    assert other != first


@pytest.mark.parametrize(
    ("command", "extra", "field"),
    [
        ("preview", ["--set", "rotation_range=500"], "rotation_range"),
        ("preview", ["--set", "rotaton_range=5"], "rotaton_range"),
        ("preview", ["--set", "fill_mode=sideways"], "fill_mode"),
        ("preview", ["--rows", "8", "--cols", "16"], "rows"),  # refused by the server
        ("bench", ["--set", "zoom_range=[2,1]"], "zoom_range"),
    ],
)
def test_a_bad_spec_names_the_field(
    server_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    extra: list[str],
    field: str,
) -> None:
    assert main(command_line(command, server_url, tmp_path, *extra)) == 1
    err = failure(capsys, command)
    assert f"invalid stream spec: {field}: " in err
    assert "?spec=" not in err  # the percent-encoded query stays out of the message


def test_preview_reports_a_file_it_cannot_write(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing" / "grid.png"
    assert main(["preview", server_url, "pets", "-o", str(path)]) == 1
    assert f"cannot write {path}: " in failure(capsys, "preview")


# --- bench --------------------------------------------------------------------------------


def test_bench_reports_a_positive_rate_with_progress(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", server_url, "pets", *SMALL_BENCH, "--set", "rotation_range=10"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    rate = re.search(r"images/s\s+([0-9.]+)", out)
    assert rate and float(rate.group(1)) > 0
    for figure in ("batches/s", "MB/s", "first batch"):
        assert figure in out
    # stderr is no terminal here: plain lines, the last one at the end.
    assert err.splitlines()[-1].startswith("bench: 3/3 batches, ")
    assert "\r" not in err


def test_bench_json_counts_the_images_received(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 19 images in batches of 5 give 5, 5, 5, 4: after the two warm-up batches, 5 + 4.
    args = ["bench", server_url, "pets", "--batches", "2", "--batch-size", "5", "--json"]
    assert main([*args, "--target-size", "16", "16"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["images"] == 9 and figures["batches"] == 2 and figures["reconnects"] == 0
    for name in ("seconds", "images_per_s", "batches_per_s", "mb_per_s", "first_batch_s"):
        assert figures[name] > 0
    x_bytes = 9 * 16 * 16 * 3  # uint8 images; labels are a little more
    assert figures["mb_per_s"] * figures["seconds"] * 1e6 > x_bytes


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bench_redraws_one_progress_line_on_a_terminal(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["bench", server_url, "pets", *SMALL_BENCH]) == 0
    drawn = terminal.getvalue()
    assert drawn.count("\r") == 3 and drawn.count("\n") == 1
    assert drawn.rstrip("\n").rsplit("\r", 1)[1].startswith("[" + "#" * 30 + "] 3/3 batches")


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["preview", "bench"])
def test_an_unknown_dataset_is_named(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    args = command_line(command, server_url, tmp_path)
    args[args.index("pets")] = "nope"
    assert main(args) == 1
    assert "unknown dataset 'nope'" in failure(capsys, command)


def test_bench_stops_with_the_servers_message_on_a_corrupt_image(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", server_url, "broken", *SMALL_BENCH]) == 1
    err = failure(capsys, "bench")
    assert "the server stopped the stream" in err and "000.png" in err


@pytest.mark.parametrize("command", ["datasets", "preview", "bench"])
def test_no_server_is_one_clear_line_at_once(
    silent_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    started = time.monotonic()
    assert main(command_line(command, silent_url, tmp_path)) == 1
    # bench must not spend the stream's reconnect budget (several seconds) on no server.
    assert time.monotonic() - started < 5
    err = failure(capsys, command)
    assert f"cannot reach {silent_url}" in err and "server must be running there" in err


def test_the_console_script_prints_no_traceback(silent_url: str) -> None:
    script = Path(sys.executable).with_name("augstream")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "augstream._cli"]
    result = subprocess.run(
        [*launcher, "datasets", silent_url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"augstream datasets: cannot reach {silent_url}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["preview", "{url}", "pets", "--set", "rotation_range"], "expected NAME=VALUE"),
        (["preview", "{url}", "pets", "--set", "target_size=[8,8]"], "use --target-size"),
        (["bench", "{url}", "pets", "--set", "batch_size=8"], "use --batch-size"),
        (["bench", "{url}", "pets", "--batches", "0"], "expected a positive whole number"),
        (["datasets", "localhost:8080"], "expected http://HOST:PORT"),
        (["preview", "{url}"], "required: DATASET"),
    ],
)
def test_bad_usage_is_argparses_exit_2(
    server_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(url=server_url) for a in args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# --- API keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["datasets", "preview", "bench"])
def test_a_key_protected_server_wants_api_key(
    keyed_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main(command_line(command, keyed_url, tmp_path)) == 1
    err = failure(capsys, command)
    assert "needs an API key: pass --api-key KEY or set AUGSTREAM_API_KEY" in err

    assert main(command_line(command, keyed_url, tmp_path, "--api-key", "wrong")) == 1
    assert "refused the API key: pass --api-key" in failure(capsys, command)

    assert main(command_line(command, keyed_url, tmp_path, "--api-key", "secret")) == 0
    assert capsys.readouterr().out


def test_the_api_key_can_come_from_the_environment(
    keyed_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUGSTREAM_API_KEY", "secret")
    assert main(["datasets", keyed_url]) == 0
    assert PETS_CLASSES in capsys.readouterr().out
