"""The ``augstream`` command: ``serve`` as a real process, and the demo end to end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from augstream import Client
from tests.stores import write_manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.mark.slow
def test_serve_folders_and_a_config_then_stream(
    image_root: Path, corrupt_root: Path, tmp_path: Path
) -> None:
    listed = tmp_path / "listed"
    shutil.copytree(image_root, listed)
    write_manifest(listed)
    config = tmp_path / "lab.toml"
    config.write_text(
        f'threads = 1\n[catalog.listed]\nurl = "file://{listed}"\n'
        'layout = "manifest"\nmanifest = "manifest.csv"\n'
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "augstream._cli",
        "serve",
        str(image_root),
        str(corrupt_root),
        "--config",
        str(config),
        "--port",
        str(port),
        "--threads",
        "1",
        "--processes",  # the workers build the catalog from the same settings
        "2",
        "--log-level",
        "info",
    ]
    # Its log to a file: a pipe read only at the end could fill and stop the server.
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path)
        with Client(url) as client:
            assert [d.name for d in client.datasets()] == ["broken", "listed", "pets"]
            for name in ("pets", "listed"):
                with client.stream(dataset=name, target_size=(16, 16), batch_size=4) as stream:
                    x, y = next(stream)
                    assert x.shape == (4, 16, 16, 3) and y.shape == (4, 3)
        assert httpx.get(f"{url}/v1/cache", timeout=30).json()["processes"] == 2
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0
    # What it sized itself to, and from how many cores, is the first thing an operator reads.
    log = log_path.read_text()
    assert re.search(
        r"sized for \d+ cores? \(CPU affinity \d+ of the machine's \d+.*\): this server "
        r"process: 1 thread, 2 worker processes of 1 thread each \(threads, processes as set, "
        r"not from the cores\); caches: ",
        log,
    ), log


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["{tmp}/nope"], "is not a folder"),
        (["{tmp}/a/cats", "{tmp}/b/cats"], "two datasets are named 'cats'"),
        (["{tmp}/a/cats", "--threads", "0"], "--threads: Input should be greater than"),
        (["--config", "{tmp}/none.toml"], "--config: cannot read"),
    ],
)
def test_serve_refuses_bad_arguments_without_a_traceback(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    for folder in ("a/cats", "b/cats"):
        (tmp_path / folder).mkdir(parents=True)
    args = [a.format(tmp=tmp_path) for a in extra]
    result = subprocess.run(
        [sys.executable, "-m", "augstream._cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.keras
def test_demo_trains_to_high_accuracy_and_prints_the_lab_table(tmp_path: Path) -> None:
    """The README's first command, as is: it must reach 0.95 test accuracy (exit code 0)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "augstream._cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    match = re.search(r"test accuracy: ([0-9.]+)", result.stdout)
    assert match and float(match.group(1)) >= 0.95
    for row in ("| none ", "| at test time only ", "| at training and test time "):
        assert row in result.stdout
    assert "the server has stopped" in result.stdout
    print(result.stdout[-600:])
