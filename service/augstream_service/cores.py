"""How many cores this process may use: its CPU affinity, and the container's CPU quota
(cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``), whichever
is fewer. Python sees the node's cores, not a container's limit: a server sized from those
would start dozens of workers on a large node and have them throttled."""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["PROCESSES_FROM", "allowed_cores", "default_processes"]

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


def allowed_cores(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _quota(root)
    if quota is not None:
        cores = min(cores or 1, max(1, math.ceil(quota)))
    return max(1, cores or 1)


def default_processes() -> int:
    """Worker processes by default: one per allowed core on a box of ``PROCESSES_FROM``
    cores or more, none (threads only) below."""
    cores = allowed_cores()
    return cores if cores >= PROCESSES_FROM else 0
