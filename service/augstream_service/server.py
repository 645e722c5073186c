"""uvicorn's server, made to hand open streams over before it stops.

On SIGTERM/SIGINT (or ``stop()`` from a thread) uvicorn stops accepting connections and waits
for open responses; endless streams never finish by themselves, so each one is told to end
with a go-away frame naming the client's next batch, which the client resumes elsewhere.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

__all__ = ["DrainingServer", "server_config"]


def server_config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    """The uvicorn settings every augstream server runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        # The app logs each request itself, with its request id (logs.RequestLog).
        access_log=False,
        # Streams get this long to send their go-away frames before they are cut.
        timeout_graceful_shutdown=5,
    )


class DrainingServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose shutdown first asks the app's streams to go away."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = config.app

    def drain(self) -> None:
        """Tell open streams to send go-away frames (what a stop does first)."""
        state = getattr(getattr(self._app, "state", None), "augstream", None)
        if state is not None:
            state.draining = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain()
        super().handle_exit(sig, frame)
