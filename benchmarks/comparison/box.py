"""The processes of a served box: its server processes (``--servers``: the one started and
its siblings) and their worker processes, named as the (h) figures show them."""

from __future__ import annotations

import glob
import time
from pathlib import Path

import httpx

__all__ = ["WORKER", "box_processes", "children", "runs", "wait_for_siblings"]

#: What a worker process's command line holds (not multiprocessing's resource tracker's).
WORKER = b"augstream_service.workers"


def children(pid: int) -> list[int]:
    """``pid``'s child processes, whichever of its threads started them."""
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        found += [int(n) for n in Path(path).read_text().split()]
    return sorted(set(found))


def runs(pid: int, what: bytes) -> bool:
    """Whether ``pid``'s command line holds ``what``."""
    try:
        return what in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return False


def box_processes(pid: int) -> dict[int, str]:
    """Each process of the box whose first server process is ``pid``, by name: ``server``,
    ``server 2``... then ``worker 1``, ``worker 2``... (not multiprocessing's resource
    trackers)."""
    servers = [pid, *(c for c in children(pid) if runs(c, b"--sibling-ports"))]
    names = {s: "server" if n == 1 else f"server {n}" for n, s in enumerate(servers, 1)}
    workers = [w for s in servers for w in children(s) if runs(w, WORKER)]
    names |= {w: f"worker {n}" for n, w in enumerate(workers, 1)}
    return names


def wait_for_siblings(url: str, timeout: float = 120.0) -> None:
    """Wait until every server process of ``url``'s box is ready (``/readyz``)."""
    ports = httpx.get(f"{url}/v1/server", timeout=30).json().get("sibling_ports", [])
    base = httpx.URL(url)
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                if httpx.get(str(base.copy_with(port=port, path="/readyz")), timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server process on port {port} did not come up")
            time.sleep(0.2)
