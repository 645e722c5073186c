"""Several server processes on one box (``augstream serve --servers N``), one stream over all.

One server process hands every batch to its workers, labels, encodes and sends it under one
GIL, so however many worker processes it has, it cannot send more than about one batch per
its per-batch Python (docs/performance.md, "A big box"). ``--servers N`` runs N server
processes on ports ``port .. port + N - 1``, each with its share of the box (``share``):
threads, worker processes, caches and memory budget. Each says at ``GET /v1/server`` which
ports its siblings listen on, and a client given any one of them spreads each stream over
all of them, as over a cluster's replicas: dynamic assignment, each batch exactly once and
the bytes one server's (they run the same code on the same CPU).

The first process (the one started) starts the others (``Siblings``), starts again one that
exits, and passes a stop (SIGTERM, Ctrl-C) on to all of them, so that they drain together;
each other one stops when the first is gone (``follow_parent``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module before it needs the settings' libraries
    from .settings import Settings

__all__ = ["SIBLING_OPTION", "Siblings", "follow_parent", "ports_of", "share"]

log = logging.getLogger("augstream")

#: The hidden option that makes ``augstream serve`` one of the siblings it names (ports).
SIBLING_OPTION = "--sibling-ports"
#: Seconds between looks at the siblings (started again after their back-off) or the parent.
_LOOK_S = 0.5
_MAX_BACKOFF_S = 30.0
#: Seconds a sibling must run for its next exit to be started again without delay growing.
_STEADY_S = 10.0


def ports_of(port: int, servers: int, listed: str | None) -> list[int]:
    """The box's server ports: those ``listed`` (``SIBLING_OPTION``'s value, in a sibling)
    or, in the first process, ``servers`` from ``port`` on; none for one server alone."""
    if listed is not None:
        return [int(p) for p in listed.split(",")]
    if servers <= 1:
        return []
    if port <= 0:
        raise ValueError(f"--servers {servers} needs a --port to count the servers' ports from")
    if port + servers - 1 > 65535:
        raise ValueError(f"--servers {servers} from --port {port} runs past port 65535")
    return list(range(port, port + servers))


def share(settings: Settings, servers: int) -> Settings:
    """One of ``servers`` processes' settings: the box's threads, worker processes, caches
    and memory budget shared out (each at least one thread; worker processes rounded up,
    so none becomes threads-only unless the box's setting is)."""
    if servers <= 1:
        return settings
    return settings.model_copy(
        update={
            "threads": max(1, settings.threads // servers),
            "processes": -(-settings.processes // servers),
            "byte_cache_bytes": settings.byte_cache_bytes // servers,
            "image_cache_bytes": settings.image_cache_bytes // servers,
            "batch_cache_bytes": settings.batch_cache_bytes // servers,
            "memory_budget_bytes": max(1 << 20, settings.memory_budget_bytes // servers),
        }
    )


@dataclass
class _Sibling:
    """One sibling process, and when to start it again once it has exited."""

    proc: subprocess.Popen[bytes]
    started_at: float
    backoff_s: float = 0.5
    #: When an exit was seen, when it is started again; None while it runs.
    again_at: float | None = None


class Siblings:
    """The other server processes of this box, started with this command's own arguments
    and each one's port, kept running until ``stop``."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._running: dict[int, _Sibling] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._keep, name="augstream-siblings", daemon=True)

    def command(self, port: int) -> list[str]:
        """The command line of the sibling on ``port``: this one's, with its port (argparse
        keeps the last of an option given twice) and the siblings' ports."""
        listed = ",".join(str(p) for p in self.ports)
        return [sys.executable, *sys.orig_argv[1:], "--port", str(port), SIBLING_OPTION, listed]

    def start(self) -> None:
        with self._lock:
            for port in self.ports[1:]:
                self._running[port] = _Sibling(self._spawn(port), time.monotonic())
        self._thread.start()

    def signal(self, sig: int) -> None:
        """Pass ``sig`` (a stop) on to every sibling, which then drains; none is started again."""
        self._stopping.set()
        with self._lock:
            procs = [sibling.proc for sibling in self._running.values()]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every sibling (SIGTERM: they drain), waiting ``timeout`` before SIGKILL."""
        self.signal(signal.SIGTERM)
        if self._thread.is_alive():
            self._thread.join()
        deadline = time.monotonic() + timeout
        for sibling in self._running.values():
            try:
                sibling.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                sibling.proc.kill()
                sibling.proc.wait()

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(port))

    def _keep(self) -> None:
        while not self._stopping.wait(_LOOK_S):
            now = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                for port, sibling in self._running.items():
                    self._look(port, sibling, now)

    def _look(self, port: int, sibling: _Sibling, now: float) -> None:
        code = sibling.proc.poll()
        if code is None:
            if now - sibling.started_at > _STEADY_S:
                sibling.backoff_s = 0.5  # it ran a while: a later exit starts afresh
            return
        if sibling.again_at is None:
            sibling.again_at = now + sibling.backoff_s
            log.warning(
                "server process on port %d exited (%s); starting it again in %.1f s",
                port,
                code,
                sibling.backoff_s,
            )
        elif now >= sibling.again_at:
            sibling.proc = self._spawn(port)
            sibling.started_at, sibling.again_at = now, None
            sibling.backoff_s = min(_MAX_BACKOFF_S, 2 * sibling.backoff_s)


def follow_parent() -> None:
    """Stop this process (SIGTERM: it drains) once the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_LOOK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="augstream-parent", daemon=True).start()
