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


@pytest.mark.parametrize("count", [1, 2, PROCESSES_FROM - 1, PROCESSES_FROM, 32])
def test_worker_processes_start_from_eight_cores(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setattr(cores, "allowed_cores", lambda: count)
    assert default_processes() == (count if count >= PROCESSES_FROM else 0)


def test_the_settings_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from augstream_service.settings import Settings

    monkeypatch.delenv("AUGSTREAM_PROCESSES", raising=False)
    monkeypatch.delenv("AUGSTREAM_THREADS", raising=False)
    monkeypatch.setattr(cores, "allowed_cores", lambda: 16)
    monkeypatch.setattr("augstream_service.settings.allowed_cores", lambda: 16)
    settings = Settings()
    assert (settings.threads, settings.processes) == (16, 16)
