"""The reliability suite: servers killed, networks broken, clients vanishing, bad input.

Each test records what it checked (``counts``); the run's summary prints them, so a CI log
shows the figures (kills survived, batches compared, streams dropped, threads and fds before
and after) rather than a bare pass.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.imagefolder import make_image_folder

_COUNTS: list[tuple[str, dict[str, Any]]] = []

#: Settings for a server without caches (a ``ServerProcess``'s ``env``): every image read
#: and decoded, every batch made, at decoding pace as on a cold start.
NO_CACHES = {
    "AUGSTREAM_IMAGE_CACHE_BYTES": "0",
    "AUGSTREAM_BYTE_CACHE_BYTES": "0",
    "AUGSTREAM_BATCH_CACHE_BYTES": "0",
}


@pytest.fixture
def counts(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with the figures it checked; printed in the run's summary."""
    found: dict[str, Any] = {}
    yield found
    if found:
        _COUNTS.append((request.node.name, found))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _COUNTS:
        return
    terminalreporter.section("reliability figures")
    for name, found in _COUNTS:
        figures = ", ".join(f"{key}={value}" for key, value in found.items())
        terminalreporter.write_line(f"{name}: {figures}")


@pytest.fixture(scope="session")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset ``odd`` of 117 images (an odd size: the last batch of 4 holds one)."""
    return make_image_folder(tmp_path_factory.mktemp("odd") / "odd", per_class=(39, 39, 38))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``augstream serve`` in its own process, on a fixed loopback port, to kill and restart;
    ``env`` adds settings (``AUGSTREAM_*``)."""

    def __init__(
        self,
        *folders: Path,
        port: int | None = None,
        log: Path | None = None,
        host: str = "127.0.0.1",
        **env: str,
    ) -> None:
        self.folders = folders
        self.env = env
        self.log = log
        self.host = host
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "augstream._cli",
            "serve",
            *map(str, self.folders),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--threads",
            "2",
            "--log-level",
            "info" if self.log else "warning",
        ]
        output = self.log.open("ab") if self.log is not None else None
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=output,
            stderr=output,
        )
        if output is not None:
            output.close()  # the child has its own copy
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"augstream serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("augstream serve did not come up")

    def figures(self) -> dict[str, int]:
        """The process's threads, open file descriptors and resident memory (MiB)."""
        assert self.process is not None
        pid = self.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            "threads": int(fields["Threads"]),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
            "rss_mib": int(fields["VmRSS"].split()[0]) // 1024,
        }

    def settled_figures(self, baseline: dict[str, int], timeout: float = 20.0) -> dict[str, int]:
        """``figures`` once the thread count is back near ``baseline``, or after ``timeout``:
        the worker threads of the HTTP server's thread pool exit after 10 s idle, but anyio
        stops idle workers only when a later call takes a worker, so each check also makes
        one (``/v1/server`` is a sync route)."""
        deadline = time.monotonic() + timeout
        while True:
            self.active_streams()
            found = self.figures()
            if found["threads"] <= baseline["threads"] + 2 or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def active_streams(self) -> int:
        """Streams the server is running now."""
        return int(httpx.get(f"{self.url}/v1/server", timeout=10).json()["active_streams"])

    def wait_idle(self, timeout: float = 90.0) -> None:
        """Wait until no stream runs: a producer notices its client left once its current
        batch is done, or, at the latest, when the send timeout (60 s) evicts it."""
        deadline = time.monotonic() + timeout
        while self.active_streams() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.active_streams() == 0, "producers still running after their clients left"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill(signal.SIGTERM)


@pytest.fixture
def server_process() -> Iterator[type[ServerProcess]]:
    """The ``ServerProcess`` class; every process started through it is stopped afterwards."""
    started: list[ServerProcess] = []

    class Tracked(ServerProcess):
        def start(self, timeout: float = 60.0) -> ServerProcess:
            started.append(self)
            return super().start(timeout)

    yield Tracked
    for server in started:
        server.stop()
