"""A loopback TCP fault proxy: cuts connections, flips bytes or freezes them, to break
streams the ways networks do."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class CuttingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``. For the n-th connection (0-based), in the
    server-to-client direction: ``cut_after(n)`` is a byte budget after which the connection is
    cut (None: no cut); ``flip_at(n)`` the offset of a byte to corrupt; ``freeze_after(n)`` an
    offset after which nothing more is forwarded but the connection stays open.
    ``drop_from`` cuts a stream just before the first occurrence of those bytes. ``rate``
    (bytes per second) throttles every connection in that direction, as a slow link, or
    ``rate(n)`` the n-th one (None: not throttled); a throttled connection reads the server
    through a small socket buffer, so the server feels the link's pace at once."""

    def __init__(
        self,
        target_port: int,
        cut_after: Callable[[int], int | None],
        drop_from: bytes | None = None,
        later_port: int | None = None,
        flip_at: Callable[[int], int | None] = lambda _: None,
        freeze_after: Callable[[int], int | None] = lambda _: None,
        rate: float | Callable[[int], float | None] | None = None,
    ) -> None:
        self._rate = rate if callable(rate) else (lambda _: rate)
        self._target = ("127.0.0.1", target_port)
        # Connections after the first go here when set (a client "failing over" elsewhere).
        self._later = ("127.0.0.1", later_port) if later_port is not None else None
        self._cut_after = cut_after
        self._drop_from = drop_from
        self._flip_at = flip_at
        self._freeze_after = freeze_after
        self.flips = 0
        self.freezes = 0
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
            index = self.connections
            budget = self._cut_after(index)
            faults = (self._flip_at(index), self._freeze_after(index))
            self.connections += 1
            target = self._later if self._later and self.connections > 1 else self._target
            rate = self._rate(index)
            upstream = socket.socket()
            if rate is not None:
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            try:
                upstream.connect(target)
            except OSError:  # its server is down: the client sees its connection end, as
                upstream.close()  # it would the server's, and the proxy keeps accepting
                client.close()
                continue
            forward = (client, upstream, None, None, (None, None), None)
            backward = (upstream, client, budget, self._drop_from, faults, rate)
            threading.Thread(target=self._pipe, args=forward, daemon=True).start()
            threading.Thread(target=self._pipe, args=backward, daemon=True).start()

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        budget: int | None,
        drop_from: bytes | None,
        faults: tuple[int | None, int | None],
        rate: float | None,
    ) -> None:
        flip, freeze = faults
        sent = 0
        began = time.monotonic()
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
                if flip is not None and sent <= flip < sent + len(data):
                    corrupted = bytearray(data)
                    corrupted[flip - sent] ^= 0x5A
                    data = bytes(corrupted)
                    self.flips += 1
                if freeze is not None and sent + len(data) >= freeze:
                    sink.sendall(data[: freeze - sent])
                    self.freezes += 1
                    self._stopped.wait()  # hold the connection open, silent
                    break
                if budget is not None and sent + len(data) >= budget:
                    sink.sendall(data[: budget - sent])
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
                if rate is not None:  # no faster than the link's rate since it opened
                    time.sleep(max(0.0, began + sent / rate - time.monotonic()))
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
