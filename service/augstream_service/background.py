"""Run an app on a real uvicorn server in a background thread (demo, tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from fastapi import FastAPI

from .server import DrainingServer, server_config

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """``with BackgroundServer(app) as server: ...`` serves ``app`` on ``server.url``.

    ``port=0`` picks a free port. Only loopback addresses are used unless told otherwise.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = DrainingServer(server_config(app, host, port, "warning"))
        self._thread = threading.Thread(
            target=self._server.run, name="augstream-server", daemon=True
        )
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; return once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (is the port in use?)")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish (streams get go-away frames) and wait for it."""
        self._server.drain()
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
