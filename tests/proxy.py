"""A loopback TCP proxy that can cut connections after a byte budget, to break streams."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class CuttingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``cut_after(n)`` returns the byte budget
    of the n-th connection (0-based) from server to client, or None for no cut.
    ``drop_from`` cuts a server-to-client stream just before the first occurrence of those
    bytes."""

    def __init__(
        self,
        target_port: int,
        cut_after: Callable[[int], int | None],
        drop_from: bytes | None = None,
        later_port: int | None = None,
    ) -> None:
        self._target = ("127.0.0.1", target_port)
        # Connections after the first go here when set (a client "failing over" elsewhere).
        self._later = ("127.0.0.1", later_port) if later_port is not None else None
        self._cut_after = cut_after
        self._drop_from = drop_from
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            budget = self._cut_after(self.connections)
            self.connections += 1
            target = self._later if self._later and self.connections > 1 else self._target
            upstream = socket.create_connection(target)
            forward = (client, upstream, None, None)
            backward = (upstream, client, budget, self._drop_from)
            threading.Thread(target=self._pipe, args=forward, daemon=True).start()
            threading.Thread(target=self._pipe, args=backward, daemon=True).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        budget: int | None,
        drop_from: bytes | None,
    ) -> None:
        sent = 0
        held = b""  # bytes that might start the pattern, held back until we know
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.sendall(held)
                    break
                if drop_from is not None:
                    data = held + data
                    found = data.find(drop_from)
                    if found >= 0:
                        sink.sendall(data[:found])
                        self.cuts += 1
                        break
                    cut = max(0, len(data) - (len(drop_from) - 1))
                    held, data = data[cut:], data[:cut]
                if budget is not None and sent + len(data) >= budget:
                    sink.sendall(data[: budget - sent])
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass  # either side went away: the cut is the point
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
