"""An ``augstream serve`` process on loopback, as a lab would run it (its own interpreter,
so the client's Python never shares a GIL with the server's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx

__all__ = ["Served", "free_port", "running", "serve"]


class Served(NamedTuple):
    """A server process on loopback: its base URL and process id."""

    url: str
    pid: int


def free_port() -> int:
    """A port nothing listens on now (loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(
    root: Path,
    threads: int,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> AbstractContextManager[Served]:
    """``augstream serve root`` with ``threads`` workers on ``host`` (a loopback address),
    once ready."""
    port = port or free_port()
    command = [sys.executable, "-m", "augstream._cli", "serve", str(root), "--host", host]
    command += ["--port", str(port), "--threads", str(threads), "--log-level", "warning"]
    return running(command, port, "/readyz", env, host)


@contextmanager
def running(
    command: Sequence[str],
    port: int,
    probe: str,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[Served]:
    """Run ``command`` (a server on ``host:port``); yield it once ``probe`` answers."""
    process = subprocess.Popen(command, env={**os.environ, **(env or {})})
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}{probe}", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"augstream serve did not come up on {url}")
            time.sleep(0.1)
        yield Served(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
