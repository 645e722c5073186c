"""How many cores this process may use: its CPU affinity, and the container's CPU quota
(cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``), whichever
is fewer. Python sees the node's cores, not a container's limit: a server sized from those
would start dozens of workers on a large node and have them throttled."""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = [
    "CORES_PER_PROCESS",
    "PROCESSES_FROM",
    "allowed_cores",
    "default_processes",
    "describe_cores",
]

#: From this many allowed cores on, a server makes its batches in worker processes: one
#: process's GIL would otherwise leave most of them idle (docs/performance.md).
PROCESSES_FROM = 8


def _quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota in cores, or None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _affinity() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def _allowed(cores: int, quota: float | None) -> int:
    return cores if quota is None else min(cores, max(1, math.ceil(quota)))


def allowed_cores(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use (at least 1)."""
    return _allowed(_affinity(), _quota(root))


def describe_cores(root: Path = Path("/sys/fs/cgroup")) -> str:
    """Where ``allowed_cores`` comes from, for the server's start-up line: an operator
    whose pod got fewer threads than the node has cores sees why."""
    cores, quota = _affinity(), _quota(root)
    node = os.cpu_count() or cores
    allowed = _allowed(cores, quota)
    parts = [f"CPU affinity {cores} of the machine's {node}"]
    if quota is not None:
        whole = "" if quota == math.ceil(quota) else ", rounded up"
        parts.append(f"CPU quota {quota:g} cores (cgroup{whole})")
    return f"{allowed} {'core' if allowed == 1 else 'cores'} ({', '.join(parts)})"


#: Allowed cores per worker process by default (each runs this many threads): a batch's
#: samples go to the workers that own them, a message each way per worker, so a process
#: per core would cost the server process ~20 messages per batch of 32 on 32 cores
#: (its GIL per image measured 66-76 us with 2 workers, 89-116 with 8 and 102-161 with 16,
#: on 2 cores); a worker's GIL is busy ~12% of each image it makes, so 4 threads leave it
#: room.
CORES_PER_PROCESS = 4


def default_processes() -> int:
    """Worker processes by default: one per ``CORES_PER_PROCESS`` allowed cores on a box of
    ``PROCESSES_FROM`` cores or more, none (threads only) below."""
    cores = allowed_cores()
    return max(2, cores // CORES_PER_PROCESS) if cores >= PROCESSES_FROM else 0
