"""The cores a server sizes itself from: its affinity and the container's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augstream_service import cores
from augstream_service.cores import PROCESSES_FROM, allowed_cores, default_processes

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_v2_quota_rounds_up_to_whole_cores(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, {"cpu.max": "150000 100000\n"})
    assert allowed_cores(root) == min(AFFINITY, 2)


def test_a_quota_under_one_core_still_gives_one(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, {"cpu.max": "20000 100000\n"})
    assert allowed_cores(root) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    assert allowed_cores(_cgroup(tmp_path, {"cpu.max": "max 100000\n"})) == AFFINITY
    assert allowed_cores(tmp_path / "absent") == AFFINITY


def test_a_v1_quota_is_read_too(tmp_path: Path) -> None:
    period = {"cpu/cpu.cfs_period_us": "100000\n"}
    root = _cgroup(tmp_path, {"cpu/cpu.cfs_quota_us": "100000\n", **period})
    assert allowed_cores(root) == 1
    unlimited = _cgroup(tmp_path / "v1", {"cpu/cpu.cfs_quota_us": "-1\n", **period})
    assert allowed_cores(unlimited) == AFFINITY


@pytest.mark.parametrize(
    ("count", "processes"), [(1, 0), (2, 0), (PROCESSES_FROM - 1, 0), (PROCESSES_FROM, 2), (9, 2),
                             (16, 4), (32, 8), (64, 16)]
)  # fmt: skip
def test_worker_processes_start_from_eight_cores_one_per_four(
    monkeypatch: pytest.MonkeyPatch, count: int, processes: int
) -> None:
    monkeypatch.setattr(cores, "allowed_cores", lambda: count)
    assert default_processes() == processes


def test_the_settings_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from augstream_service.settings import Settings, worker_threads

    monkeypatch.delenv("AUGSTREAM_PROCESSES", raising=False)
    monkeypatch.delenv("AUGSTREAM_THREADS", raising=False)
    monkeypatch.setattr(cores, "allowed_cores", lambda: 16)
    monkeypatch.setattr("augstream_service.settings.allowed_cores", lambda: 16)
    settings = Settings()
    assert (settings.threads, settings.processes, worker_threads(settings)) == (16, 4, 4)
    assert worker_threads(Settings(threads=6, processes=4)) == 2  # rounded up
    assert worker_threads(Settings(processes=4, worker_threads=1)) == 1
